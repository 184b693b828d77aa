#!/usr/bin/env python3
"""A tour of switchyard's client socket: node table, latest temperatures, a
message to the first node, then 5 seconds of pushed messages and data.

    python3 examples/python/example.py [--host 127.0.0.1] [--port 5000]
"""

import argparse
import sys
import time

from switchyard_client import Client, Listener, SwitchError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="switch host [127.0.0.1]")
    ap.add_argument("--port", type=int, default=5000, help="client socket port [5000]")
    ap.add_argument("--listen", type=float, default=5.0, help="seconds to listen [5]")
    args = ap.parse_args()

    try:
        client = Client(args.host, args.port)
    except ConnectionError as e:
        print(e, file=sys.stderr)
        return 1

    def on_message(src, message):
        print(f"  M from 0x{src:04x}: {message.decode('utf-8', 'replace')}")

    def on_data(src, entries):
        shown = ", ".join(
            f"{t}={v if v is not None else raw.hex()}" for t, raw, v in entries
        )
        print(f"  D from 0x{src:04x}: {shown}")

    with client, Listener(args.host, args.port) as listener:
        listener.on("M", on_message)
        listener.on("D", on_data)

        status = client.node_status()
        print(f"{status['node_amount']} node(s):")
        for addr, st in zip(status["node_addr_list"], status["node_status_list"]):
            print(f"  0x{addr:04x}  {st}")

        try:
            temps = client.get("TMP")
            print("latest temperatures:")
            for addr, value in sorted(temps.decoded().items()):
                print(f"  0x{addr:04x}  {value['celsius']:.2f} °C")
        except SwitchError as e:
            print(f"no temperatures: {e}")

        if status["node_addr_list"]:
            first = status["node_addr_list"][0]
            try:
                client.send(first, "hello from example.py")
                print(f"sent a message to 0x{first:04x}")
            except SwitchError as e:
                print(f"send to 0x{first:04x} failed: {e}")

        print(f"listening for {args.listen:g} s ...")
        time.sleep(args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
