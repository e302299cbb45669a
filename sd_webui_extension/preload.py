"""Loaded by SD-WebUI before it parses the command line: our one flag."""


def preload(parser):
    parser.add_argument("--arting-daemon-url", type=str, default=None,
                        help="arting-2api daemon URL for the Arting (remote) script; "
                             "overrides ARTING_DAEMON_URL and the Arting setting")
