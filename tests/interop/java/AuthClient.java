// JAX-WS client of /soap/Auth, compiled against the classes `wsimport` generates from the WSDL
// as served (package lgsp.auth); run by tests/interop/test_java_wsimport_client.py.
//
//   java AuthClient <wsdl-url> <accessKey> <secretKey>
//
// Prints one `key=value` line per result on stdout.  A fault that reaches us as the generic
// SOAPFaultException instead of the typed EsbFault_Exception (generated from the wsdl:fault)
// is reported as `untypedFault=<faultcode>` with exit status 3.

import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Base64;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import javax.xml.ws.soap.SOAPFaultException;

import lgsp.auth.Auth;
import lgsp.auth.AuthHeader;
import lgsp.auth.AuthService;
import lgsp.auth.CallerInfo;
import lgsp.auth.EsbFault_Exception;
import lgsp.auth.SessionTicket;

public final class AuthClient {
    private static final String ALGORITHM = "HMAC-SHA256";
    // ISO 8601 with a numeric offset (+00:00), never "Z".
    private static final DateTimeFormatter TIMESTAMP = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ssxxx");
    private static final SecureRandom RANDOM = new SecureRandom();

    private AuthClient() {
    }

    static String sign(String secretKey, String... fields) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secretKey.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        byte[] digest = mac.doFinal(String.join("\n", fields).getBytes(StandardCharsets.UTF_8));
        return Base64.getEncoder().encodeToString(digest);
    }

    static String nonce() {
        byte[] bytes = new byte[8];
        RANDOM.nextBytes(bytes);
        StringBuilder hex = new StringBuilder();
        for (byte b : bytes) {
            hex.append(String.format("%02x", b));
        }
        return hex.toString();
    }

    static void out(String key, Object value) {
        System.out.println(key + "=" + value);
    }

    /** Calls {@code call} expecting the typed fault; prints its code under {@code prefix}. */
    static void expectFault(String prefix, FaultingCall call) throws Exception {
        try {
            call.run();
            out(prefix + ".fault", "none");
        } catch (EsbFault_Exception fault) {
            out(prefix + ".exception", fault.getClass().getName());
            out(prefix + ".code", fault.getFaultInfo().getCode());
            out(prefix + ".reference", fault.getFaultInfo().getReference());
        } catch (SOAPFaultException untyped) {
            out("untypedFault", untyped.getFault().getFaultCode() + " " + untyped.getFault().getFaultString());
            System.exit(3);
        }
    }

    interface FaultingCall {
        void run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: java AuthClient <wsdl-url> <accessKey> <secretKey>");
            System.exit(2);
        }
        String wsdl = args[0];
        String accessKey = args[1];
        String secretKey = args[2];
        Auth port = new AuthService(new URL(wsdl)).getAuth();

        out("serverTime", port.getServerTime());

        String timestamp = OffsetDateTime.now(ZoneOffset.UTC).format(TIMESTAMP);
        String nonce = nonce();
        String signature = sign(secretKey, accessKey, timestamp, nonce, ALGORITHM, "");
        SessionTicket ticket = port.authenticate(accessKey, timestamp, nonce, ALGORITHM, signature, null);
        out("ticket.agency", ticket.getAgency());
        out("ticket.application", ticket.getApplication());
        out("ticket.expiresAt", ticket.getExpiresAt());
        out("ticket.tokenLength", ticket.getSessionToken().length());

        AuthHeader header = new AuthHeader();
        header.setSessionToken(ticket.getSessionToken());
        CallerInfo caller = port.whoAmI(header);
        out("whoami.agency", caller.getAgency());
        out("whoami.application", caller.getApplication());
        out("whoami.accessKey", caller.getAccessKey());

        // The same signed request again: the nonce has been used.
        expectFault("replay", () -> port.authenticate(accessKey, timestamp, nonce, ALGORITHM, signature, null));

        // A fresh nonce but a signature made with the wrong key.
        String badNonce = nonce();
        String badSignature = sign(secretKey + "x", accessKey, timestamp, badNonce, ALGORITHM, "");
        expectFault("badSignature", () -> port.authenticate(accessKey, timestamp, badNonce, ALGORITHM, badSignature, null));
    }
}
