"""Logs in to AMI on loopback and places a test call to the echo line; exits non-zero on failure.

Usage: ami_echo_call.py SECRET_FILE EXTENSION  (the secret never appears on a command line).
"""

import socket
import sys
from pathlib import Path


def read_response(sock: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("AMI closed the connection")
        data += chunk
    return data.decode()


def main() -> None:
    secret = Path(sys.argv[1]).read_text().strip()
    with socket.create_connection(("127.0.0.1", 5038), timeout=10) as sock:
        sock.recv(128)  # banner
        sock.sendall(f"Action: Login\r\nUsername: callvault\r\nSecret: {secret}\r\n\r\n".encode())
        if "Success" not in read_response(sock):
            raise SystemExit("AMI login failed")
        sock.sendall(
            f"Action: Originate\r\nChannel: Local/{sys.argv[2]}@callvault-lines\r\n"
            "Application: Wait\r\nData: 2\r\nTimeout: 10000\r\n\r\n".encode()
        )
        if "Success" not in read_response(sock):
            raise SystemExit("test call to the echo line failed")
    print("AMI login and echo call OK")


main()
