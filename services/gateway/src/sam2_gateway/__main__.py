from sam2_gateway.cli import main

main()
