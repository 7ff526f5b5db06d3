#!/usr/bin/env python3
"""Print a Hawser password file line (auth.file.path) for a user.

  python3 tests/auth/mkpasswd.py alice            # asks for the password
  python3 tests/auth/mkpasswd.py alice 's3cret'    # or takes it as argument

Format: user:$pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>
(PBKDF2-HMAC-SHA256, 16-byte random salt, 32-byte hash), the format the
broker's auth module reads. Standard library only.
"""

import base64
import getpass
import hashlib
import os
import sys


def entry(user, password, iterations=10000):
    if not user or ":" in user:
        raise ValueError("user must be non-empty and without ':'")
    salt = os.urandom(16)
    h = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)
    return "%s:$pbkdf2-sha256$%d$%s$%s" % (
        user, iterations, base64.b64encode(salt).decode(), base64.b64encode(h).decode())


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    pw = sys.argv[2] if len(sys.argv) == 3 else getpass.getpass("password: ")
    print(entry(sys.argv[1], pw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
