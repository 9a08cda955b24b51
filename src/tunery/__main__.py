from tunery.cli import main

main()
