import sys

from tools.fakes.twilio.cli import main

sys.exit(main())
