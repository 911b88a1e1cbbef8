import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the program starts
    print("memoa: interrupted (Ctrl-C)", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
