import sys

from gmai_client.cli import main

sys.exit(main())
