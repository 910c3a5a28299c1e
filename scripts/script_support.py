"""What the acceptance scripts share: loopback ports, bounded polls, key encodings.

Imported by scripts/mirror-acceptance.py, scripts/keys-acceptance.py and
scripts/long-completion.py (Python puts a script's own directory on its import path).
"""
import base64
import socket
import time


def b64(s):
    """URL-safe base64 without padding, as the admin API names keys in paths."""
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


def free_port():
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what, check, seconds=60.0):
    """Polls `check` every 0.1 s until it returns something true (returned), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}")
