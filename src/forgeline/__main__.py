from forgeline.cli.app import main

main()
