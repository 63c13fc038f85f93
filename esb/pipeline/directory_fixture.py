"""A generated national agency list (danh mục mã định danh) for tests, benchmarks and demos.

:func:`generate_agencies` builds ``count`` agencies shaped like the real list of about
111,000 units: ministries and central bodies (groups A-G, I), the 63 provinces and
centrally-run cities (``H01``-``H63``, ``H53`` Tây Ninh and ``H30`` Hậu Giang as in the demo
data) with their People's Councils (``K01``-``K63``), then under each province its
departments (sở, ban, ngành) and their units, its districts (UBND huyện, thị xã, thành phố)
with their offices (phòng), communes (UBND xã, phường, thị trấn), schools and commune
bodies.  Names carry Vietnamese diacritics; about one in four is written with the usual
abbreviations (``UBND``, ``Sở TT&TT``, ``Phòng GD&ĐT``), as real lists mix both.

Codes are QCVN 102 (``LLL.KK.JJ.XNN``, the lowest level on the left) with the matching
QĐ 20 code (``XNN.JJ.KK.LLL``) for most units and a former code for some.  The list is
deterministic for a given ``seed`` and ``count``; it is produced level by level (every
parent before its children) and cut at ``count``, so a small count gives the top levels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from esb.domain.agencies import AgencyRecord

__all__ = ["PROVINCES", "generate_agencies"]

# (QĐ 20 level-1 code, name, is a centrally-run city)
PROVINCES: tuple[tuple[str, str, bool], ...] = tuple(
    (f"H{number:02d}", name, city)
    for number, (name, city) in enumerate(
        (
            ("An Giang", False),
            ("Bà Rịa - Vũng Tàu", False),
            ("Bắc Giang", False),
            ("Bắc Kạn", False),
            ("Bạc Liêu", False),
            ("Bắc Ninh", False),
            ("Bến Tre", False),
            ("Bình Định", False),
            ("Bình Dương", False),
            ("Bình Phước", False),
            ("Bình Thuận", False),
            ("Cà Mau", False),
            ("Cần Thơ", True),
            ("Cao Bằng", False),
            ("Đà Nẵng", True),
            ("Đắk Lắk", False),
            ("Đắk Nông", False),
            ("Điện Biên", False),
            ("Đồng Nai", False),
            ("Đồng Tháp", False),
            ("Gia Lai", False),
            ("Hà Giang", False),
            ("Hà Nam", False),
            ("Hà Nội", True),
            ("Hà Tĩnh", False),
            ("Hải Dương", False),
            ("Hải Phòng", True),
            ("Hòa Bình", False),
            ("Hưng Yên", False),
            ("Hậu Giang", False),  # H30, as in the demo data
            ("Khánh Hòa", False),
            ("Kiên Giang", False),
            ("Kon Tum", False),
            ("Lai Châu", False),
            ("Lâm Đồng", False),
            ("Lạng Sơn", False),
            ("Lào Cai", False),
            ("Long An", False),
            ("Nam Định", False),
            ("Nghệ An", False),
            ("Ninh Bình", False),
            ("Ninh Thuận", False),
            ("Phú Thọ", False),
            ("Phú Yên", False),
            ("Quảng Bình", False),
            ("Quảng Nam", False),
            ("Quảng Ngãi", False),
            ("Quảng Ninh", False),
            ("Quảng Trị", False),
            ("Sóc Trăng", False),
            ("Sơn La", False),
            ("Thái Bình", False),
            ("Tây Ninh", False),  # H53, as in the demo data
            ("Thái Nguyên", False),
            ("Thanh Hóa", False),
            ("Hồ Chí Minh", True),
            ("Thừa Thiên Huế", False),
            ("Tiền Giang", False),
            ("Trà Vinh", False),
            ("Tuyên Quang", False),
            ("Vĩnh Long", False),
            ("Vĩnh Phúc", False),
            ("Yên Bái", False),
        ),
        start=1,
    )
)

# Departments of a province: (full name, abbreviated name or None, its units).
_DEPARTMENTS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    (
        "Văn phòng Ủy ban nhân dân",
        "Văn phòng UBND",
        ("Phòng Hành chính - Tổ chức", "Trung tâm Phục vụ hành chính công", "Cổng Thông tin điện tử"),
    ),
    (
        "Sở Nội vụ",
        None,
        ("Văn phòng Sở", "Thanh tra Sở", "Ban Thi đua - Khen thưởng", "Chi cục Văn thư - Lưu trữ"),
    ),
    ("Sở Tư pháp", None, ("Văn phòng Sở", "Phòng Hành chính tư pháp", "Trung tâm Trợ giúp pháp lý nhà nước")),
    (
        "Sở Kế hoạch và Đầu tư",
        "Sở KH&ĐT",
        ("Văn phòng Sở", "Phòng Đăng ký kinh doanh", "Trung tâm Xúc tiến đầu tư"),
    ),
    ("Sở Tài chính", None, ("Văn phòng Sở", "Phòng Quản lý ngân sách", "Phòng Tài chính doanh nghiệp")),
    ("Sở Công Thương", None, ("Văn phòng Sở", "Chi cục Quản lý thị trường", "Trung tâm Khuyến công")),
    (
        "Sở Nông nghiệp và Phát triển nông thôn",
        "Sở NN&PTNT",
        (
            "Văn phòng Sở",
            "Chi cục Kiểm lâm",
            "Chi cục Thủy lợi",
            "Chi cục Trồng trọt và Bảo vệ thực vật",
            "Trung tâm Khuyến nông",
        ),
    ),
    (
        "Sở Giao thông vận tải",
        "Sở GTVT",
        ("Văn phòng Sở", "Thanh tra Sở", "Ban Quản lý dự án đầu tư xây dựng công trình giao thông"),
    ),
    ("Sở Xây dựng", None, ("Văn phòng Sở", "Thanh tra Sở", "Trung tâm Kiểm định chất lượng xây dựng")),
    (
        "Sở Tài nguyên và Môi trường",
        "Sở TN&MT",
        (
            "Văn phòng Sở",
            "Chi cục Bảo vệ môi trường",
            "Văn phòng Đăng ký đất đai",
            "Trung tâm Quan trắc môi trường",
        ),
    ),
    (
        "Sở Thông tin và Truyền thông",
        "Sở TT&TT",
        ("Văn phòng Sở", "Thanh tra Sở", "Trung tâm Công nghệ thông tin và Truyền thông"),
    ),
    (
        "Sở Lao động - Thương binh và Xã hội",
        "Sở LĐ-TB&XH",
        (
            "Văn phòng Sở",
            "Trung tâm Dịch vụ việc làm",
            "Trung tâm Công tác xã hội",
            "Cơ sở cai nghiện ma túy",
        ),
    ),
    (
        "Sở Văn hóa, Thể thao và Du lịch",
        "Sở VH-TT&DL",
        ("Văn phòng Sở", "Thư viện", "Bảo tàng", "Trung tâm Văn hóa - Điện ảnh"),
    ),
    (
        "Sở Khoa học và Công nghệ",
        "Sở KH&CN",
        (
            "Văn phòng Sở",
            "Chi cục Tiêu chuẩn Đo lường Chất lượng",
            "Trung tâm Ứng dụng tiến bộ khoa học và công nghệ",
        ),
    ),
    (
        "Sở Giáo dục và Đào tạo",
        "Sở GD&ĐT",
        (
            "Văn phòng Sở",
            "Thanh tra Sở",
            "Trường Trung học phổ thông chuyên",
            "Trường Trung học phổ thông Nguyễn Trãi",
            "Trường Trung học phổ thông Lê Quý Đôn",
            "Trung tâm Giáo dục thường xuyên",
        ),
    ),
    (
        "Sở Y tế",
        None,
        (
            "Văn phòng Sở",
            "Chi cục An toàn vệ sinh thực phẩm",
            "Bệnh viện Đa khoa",
            "Trung tâm Kiểm soát bệnh tật",
            "Bệnh viện Y dược cổ truyền",
        ),
    ),
    ("Thanh tra", None, ("Phòng Nghiệp vụ 1", "Phòng Nghiệp vụ 2")),
    ("Ban Dân tộc", None, ("Văn phòng Ban",)),
    ("Sở Ngoại vụ", None, ("Văn phòng Sở",)),
    (
        "Ban Quản lý các khu công nghiệp",
        "BQL các khu công nghiệp",
        ("Văn phòng Ban", "Phòng Quản lý doanh nghiệp"),
    ),
    ("Đài Phát thanh và Truyền hình", None, ("Phòng Thời sự", "Phòng Kỹ thuật")),
    ("Bảo hiểm xã hội", "BHXH", ("Văn phòng", "Phòng Thu", "Phòng Chế độ bảo hiểm xã hội")),
    (
        "Công an",
        "CA",
        ("Phòng Tham mưu", "Phòng Cảnh sát giao thông", "Phòng Quản lý hành chính về trật tự xã hội"),
    ),
)

# Offices of a district (full name, abbreviated name or None); index 6 is the education office.
_DISTRICT_OFFICES: tuple[tuple[str, str | None], ...] = (
    ("Văn phòng Hội đồng nhân dân và Ủy ban nhân dân", "Văn phòng HĐND và UBND"),
    ("Phòng Nội vụ", None),
    ("Phòng Tư pháp", None),
    ("Phòng Tài chính - Kế hoạch", "Phòng TC-KH"),
    ("Phòng Tài nguyên và Môi trường", "Phòng TN&MT"),
    ("Phòng Lao động - Thương binh và Xã hội", "Phòng LĐ-TB&XH"),
    ("Phòng Giáo dục và Đào tạo", "Phòng GD&ĐT"),
    ("Phòng Văn hóa và Thông tin", None),
    ("Phòng Y tế", None),
    ("Thanh tra", None),
    ("Phòng Kinh tế và Hạ tầng", None),
    ("Phòng Nông nghiệp và Phát triển nông thôn", "Phòng NN&PTNT"),
    ("Trung tâm Y tế", None),
)
_EDUCATION_OFFICE = 6
_MAX_DISTRICTS = 67  # level-2 numbers 32..98: QCVN 102 allows two digits

_SCHOOLS: tuple[tuple[str, str | None], ...] = (
    ("Trường Mầm non", "Trường MN"),
    ("Trường Tiểu học", "Trường TH"),
    ("Trường Trung học cơ sở", "Trường THCS"),
)

_COMMUNE_BODIES: tuple[str, ...] = (
    "Công an",
    "Trạm Y tế",
    "Hội Nông dân",
    "Đoàn Thanh niên",
    "Hội Liên hiệp Phụ nữ",
    "Ban Chỉ huy Quân sự",
)

# Central bodies: (level-1 code, name, units).
_MINISTRY_UNITS = (
    "Văn phòng Bộ",
    "Vụ Tổ chức cán bộ",
    "Vụ Pháp chế",
    "Vụ Kế hoạch - Tài chính",
    "Thanh tra Bộ",
    "Vụ Hợp tác quốc tế",
)
_CENTRAL: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("A01", "Văn phòng Trung ương Đảng", ("Vụ Tổng hợp", "Vụ Hành chính")),
    ("A02", "Ban Tổ chức Trung ương", ("Vụ Tổ chức - Cán bộ", "Văn phòng Ban")),
    ("B01", "Văn phòng Chủ tịch nước", ("Vụ Tổng hợp", "Vụ Pháp luật")),
    ("C01", "Văn phòng Quốc hội", ("Vụ Tổng hợp", "Vụ Hành chính", "Trung tâm Tin học")),
    ("D01", "Tòa án nhân dân tối cao", ("Văn phòng", "Vụ Tổ chức - Cán bộ")),
    ("E01", "Viện kiểm sát nhân dân tối cao", ("Văn phòng", "Vụ Tổ chức cán bộ")),
    ("F01", "Kiểm toán Nhà nước", ("Văn phòng", "Vụ Tổng hợp")),
    ("G01", "Bộ Quốc phòng", _MINISTRY_UNITS),
    ("G02", "Bộ Công an", _MINISTRY_UNITS),
    ("G03", "Bộ Ngoại giao", _MINISTRY_UNITS),
    (
        "G04",
        "Bộ Nội vụ",
        (*_MINISTRY_UNITS, "Cục Văn thư và Lưu trữ nhà nước", "Ban Thi đua - Khen thưởng Trung ương"),
    ),
    ("G05", "Bộ Tư pháp", _MINISTRY_UNITS),
    ("G06", "Bộ Kế hoạch và Đầu tư", (*_MINISTRY_UNITS, "Tổng cục Thống kê")),
    ("G07", "Bộ Tài chính", (*_MINISTRY_UNITS, "Tổng cục Thuế", "Kho bạc Nhà nước", "Tổng cục Hải quan")),
    ("G08", "Bộ Công Thương", _MINISTRY_UNITS),
    ("G09", "Bộ Nông nghiệp và Phát triển nông thôn", _MINISTRY_UNITS),
    ("G10", "Bộ Giao thông vận tải", _MINISTRY_UNITS),
    ("G11", "Bộ Xây dựng", _MINISTRY_UNITS),
    ("G12", "Bộ Tài nguyên và Môi trường", _MINISTRY_UNITS),
    (
        "G13",
        "Bộ Thông tin và Truyền thông",
        (*_MINISTRY_UNITS, "Cục Chuyển đổi số quốc gia", "Cục An toàn thông tin"),
    ),
    ("G14", "Bộ Lao động - Thương binh và Xã hội", _MINISTRY_UNITS),
    ("G15", "Bộ Văn hóa, Thể thao và Du lịch", _MINISTRY_UNITS),
    ("G16", "Bộ Khoa học và Công nghệ", _MINISTRY_UNITS),
    ("G17", "Bộ Giáo dục và Đào tạo", _MINISTRY_UNITS),
    ("G18", "Bộ Y tế", _MINISTRY_UNITS),
    ("G19", "Ủy ban Dân tộc", _MINISTRY_UNITS),
    ("G20", "Ngân hàng Nhà nước Việt Nam", ("Văn phòng", "Vụ Tổ chức cán bộ")),
    ("G21", "Thanh tra Chính phủ", ("Văn phòng", "Vụ Tổ chức cán bộ")),
    ("G22", "Văn phòng Chính phủ", ("Vụ Tổng hợp", "Vụ Hành chính", "Cục Kiểm soát thủ tục hành chính")),
    ("G23", "Bảo hiểm xã hội Việt Nam", ("Văn phòng", "Ban Thu", "Ban Thực hiện chính sách bảo hiểm xã hội")),
    ("G24", "Thông tấn xã Việt Nam", ("Văn phòng", "Ban Biên tập tin trong nước")),
    ("G25", "Đài Truyền hình Việt Nam", ("Văn phòng", "Ban Thời sự")),
    ("G26", "Đài Tiếng nói Việt Nam", ("Văn phòng", "Ban Thời sự")),
    ("G27", "Viện Hàn lâm Khoa học và Công nghệ Việt Nam", ("Văn phòng", "Viện Công nghệ thông tin")),
    ("G28", "Viện Hàn lâm Khoa học xã hội Việt Nam", ("Văn phòng", "Viện Ngôn ngữ học")),
    ("I01", "Ủy ban Trung ương Mặt trận Tổ quốc Việt Nam", ("Văn phòng", "Ban Tổ chức")),
    ("I02", "Tổng Liên đoàn Lao động Việt Nam", ("Văn phòng", "Ban Tổ chức")),
    ("I03", "Trung ương Đoàn Thanh niên Cộng sản Hồ Chí Minh", ("Văn phòng", "Ban Tổ chức")),
    ("I04", "Trung ương Hội Liên hiệp Phụ nữ Việt Nam", ("Văn phòng", "Ban Tổ chức")),
    ("I05", "Trung ương Hội Nông dân Việt Nam", ("Văn phòng", "Ban Tổ chức")),
    ("I06", "Trung ương Hội Cựu chiến binh Việt Nam", ("Văn phòng", "Ban Tổ chức")),
)
# Ministry units with one branch per province (level 3): "Cục Thuế tỉnh Tây Ninh".
_PROVINCIAL_BRANCHES = {
    "Tổng cục Thuế": "Cục Thuế",
    "Kho bạc Nhà nước": "Kho bạc Nhà nước",
    "Tổng cục Thống kê": "Cục Thống kê",
    "Tổng cục Hải quan": "Cục Hải quan",
}

# Syllables of place names (real ones recur: Châu Thành, Tân Hòa, An Bình...).
_FIRST = (
    "An",
    "Bình",
    "Tân",
    "Phước",
    "Long",
    "Hòa",
    "Thạnh",
    "Mỹ",
    "Vĩnh",
    "Phú",
    "Trường",
    "Hưng",
    "Thái",
    "Đông",
    "Tây",
    "Nam",
    "Bắc",
    "Quang",
    "Minh",
    "Hiệp",
    "Thanh",
    "Thuận",
    "Lộc",
    "Hải",
    "Cẩm",
    "Đức",
    "Nghĩa",
    "Xuân",
    "Hồng",
    "Kim",
    "Ngọc",
    "Đại",
    "Trung",
    "Hoàng",
    "Cát",
    "Sơn",
    "Gia",
    "Lương",
    "Tiên",
    "Châu",
    "Lạc",
    "Định",
    "Hương",
    "Yên",
    "Khánh",
    "Diên",
    "Quảng",
    "Thới",
)
_SECOND = (
    "Hòa",
    "Bình",
    "Thành",
    "Đông",
    "Tây",
    "Lợi",
    "Phú",
    "Hưng",
    "Thạnh",
    "Lộc",
    "Trung",
    "Mỹ",
    "Thuận",
    "An",
    "Phước",
    "Long",
    "Hiệp",
    "Tân",
    "Thới",
    "Điền",
    "Khánh",
    "Sơn",
    "Hải",
    "Lạc",
    "Xuân",
    "Nghĩa",
    "Đức",
    "Quang",
    "Minh",
    "Yên",
    "Vinh",
    "Hà",
    "Giang",
    "Lâm",
    "Cường",
    "Phong",
    "Tiến",
    "Thắng",
    "Hồng",
    "Nguyên",
    "Bảo",
    "Hậu",
    "Chánh",
    "Ninh",
    "Lập",
    "Biên",
    "Trạch",
    "Cầu",
)


@dataclass(frozen=True)
class _Unit:
    code: str  # QCVN 102
    qd20: str
    name: str


def _qcvn(level1: str, level2: int = 0, level3: int = 0, level4: int = 0) -> str:
    return f"{level4:03d}.{level3:02d}.{level2:02d}.{level1}"


def _qd20(level1: str, *segments: int) -> str:
    return ".".join((level1, *(f"{s:03d}" if i == 2 else f"{s:02d}" for i, s in enumerate(segments))))


class _Namer:
    """Place names without repeats inside one parent, abbreviated names now and then."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def places(self, count: int, *, first: str | None = None) -> list[str]:
        names: list[str] = [first] if first else []
        seen = set(names)
        while len(names) < count:
            name = f"{self.rng.choice(_FIRST)} {self.rng.choice(_SECOND)}"
            if name not in seen and name.split()[0] != name.split()[1]:
                seen.add(name)
                names.append(name)
        return names

    def abbreviated(self) -> bool:
        return self.rng.random() < 0.25


def _record(unit: _Unit, rng: random.Random, serial: int) -> AgencyRecord:
    has_qd20 = rng.random() < 0.8
    has_old = rng.random() < 0.3
    return AgencyRecord(
        unit.code,
        unit.name,
        qd20_code=unit.qd20 if has_qd20 else None,
        old_code=f"VXP.{unit.code[-3:]}.{serial:06d}" if has_old else None,
    )


def generate_agencies(count: int = 120_000, *, seed: int = 102) -> list[AgencyRecord]:
    """``count`` agencies of a generated national list, parents before children (deterministic)."""
    if count < 1:
        return []
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    namer = _Namer(rng)
    central_units = sum(1 + len(units) for _, _, units in _CENTRAL) + len(_PROVINCIAL_BRANCHES) * len(
        PROVINCES
    )
    per_province = max(1, math.ceil((count - central_units) / len(PROVINCES)))
    levels: list[list[_Unit]] = [[], [], [], []]
    for unit_level, unit in _central(rng):
        levels[unit_level - 1].append(unit)
    for level1, province, city in PROVINCES:
        for unit_level, unit in _province(level1, province, city, per_province, namer):
            levels[unit_level - 1].append(unit)
    records: list[AgencyRecord] = []
    for units in levels:
        for unit in units:
            if len(records) == count:
                return records
            records.append(_record(unit, rng, len(records) + 1))
    return records


def _central(rng: random.Random) -> Iterator[tuple[int, _Unit]]:
    for level1, name, units in _CENTRAL:
        yield 1, _Unit(_qcvn(level1), level1, name)
        for number, unit_name in enumerate(units, start=1):
            yield 2, _Unit(_qcvn(level1, number), _qd20(level1, number), unit_name)
            branch = _PROVINCIAL_BRANCHES.get(unit_name)
            if branch is None:
                continue
            for index, (_, province, city) in enumerate(PROVINCES, start=1):
                kind = "thành phố" if city else "tỉnh"
                yield (
                    3,
                    _Unit(
                        _qcvn(level1, number, index),
                        _qd20(level1, number, index),
                        f"{branch} {kind} {province}",
                    ),
                )
    for level1, province, city in PROVINCES:
        council = "K" + level1[1:]
        kind = "thành phố" if city else "tỉnh"
        abbreviated = rng.random() < 0.25
        prefix = "HĐND" if abbreviated else "Hội đồng nhân dân"
        yield 1, _Unit(_qcvn(council), council, f"{prefix} {kind} {province}")


def _unit_name(unit: str, department: str, where: str) -> str:
    """``Văn phòng Sở Tư pháp tỉnh X``, ``Phòng Thu - BHXH tỉnh X``, ``Chi cục Kiểm lâm tỉnh X``."""
    if unit in ("Văn phòng Sở", "Thanh tra Sở"):
        return f"{unit.removesuffix(' Sở')} {department} {where}"
    if unit in ("Văn phòng", "Văn phòng Ban"):
        return f"Văn phòng {department} {where}"
    if unit.startswith("Phòng "):
        return f"{unit} - {department} {where}"
    return f"{unit} {where}"


def _province(
    level1: str, province: str, city: bool, budget: int, namer: _Namer
) -> Iterator[tuple[int, _Unit]]:
    kind = "thành phố" if city else "tỉnh"
    where = f"{kind} {province}"
    ubnd = "UBND" if namer.abbreviated() else "Ủy ban nhân dân"
    yield 1, _Unit(_qcvn(level1), level1, f"{ubnd} {where}")
    used = 1
    for number, (full, short, units) in enumerate(_DEPARTMENTS, start=1):
        name = short if short and namer.abbreviated() else full
        yield 2, _Unit(_qcvn(level1, number), _qd20(level1, number), f"{name} {where}")
        for unit_number, unit in enumerate(units, start=1):
            yield (
                3,
                _Unit(
                    _qcvn(level1, number, unit_number),
                    _qd20(level1, number, unit_number),
                    _unit_name(unit, name, where),
                ),
            )
        used += 1 + len(units)
    # Each district: offices, communes, schools (under the education office) and commune bodies.
    communes = 18
    per_district = 1 + len(_DISTRICT_OFFICES) + communes * (1 + len(_COMMUNE_BODIES) + len(_SCHOOLS))
    districts = max(1, min(_MAX_DISTRICTS, math.ceil((budget - used) / per_district)))
    first = "Châu Thành" if level1 in ("H53", "H30") else None
    for offset, district in enumerate(namer.places(districts, first=first)):
        number = 32 + offset  # the demo's UBND huyện Châu Thành is 000.00.32.H53
        district_kind = "thành phố" if offset == districts - 1 and districts > 2 else "huyện"
        district_where = f"{district_kind} {district}"
        ubnd = "UBND" if namer.abbreviated() else "Ủy ban nhân dân"
        yield 2, _Unit(_qcvn(level1, number), _qd20(level1, number), f"{ubnd} {district_where}")
        for office_number, (full, short) in enumerate(_DISTRICT_OFFICES, start=1):
            name = short if short and namer.abbreviated() else full
            yield (
                3,
                _Unit(
                    _qcvn(level1, number, office_number),
                    _qd20(level1, number, office_number),
                    f"{name} {district_where}",
                ),
            )
        education = _EDUCATION_OFFICE + 1
        school_number = 0
        for commune_offset, commune in enumerate(namer.places(communes)):
            commune_number = 20 + commune_offset
            commune_kind = (
                "phường" if district_kind == "thành phố" else ("thị trấn" if commune_offset == 0 else "xã")
            )
            commune_where = f"{commune_kind} {commune}"
            ubnd = "UBND" if namer.abbreviated() else "Ủy ban nhân dân"
            yield (
                3,
                _Unit(
                    _qcvn(level1, number, commune_number),
                    _qd20(level1, number, commune_number),
                    f"{ubnd} {commune_where}",
                ),
            )
            for body_number, body in enumerate(_COMMUNE_BODIES, start=1):
                yield (
                    4,
                    _Unit(
                        _qcvn(level1, number, commune_number, body_number),
                        _qd20(level1, number, commune_number, body_number),
                        f"{body} {commune_where}",
                    ),
                )
            for full, short in _SCHOOLS:
                school_number += 1
                name = short if short and namer.abbreviated() else full
                yield (
                    4,
                    _Unit(
                        _qcvn(level1, number, education, school_number),
                        _qd20(level1, number, education, school_number),
                        f"{name} {commune}",
                    ),
                )
