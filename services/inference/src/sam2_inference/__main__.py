from sam2_inference.cli import main

main()
