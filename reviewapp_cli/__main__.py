from reviewapp_cli.app import main

main()
