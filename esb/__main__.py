from esb.cli.main import main

main()
