#!/usr/bin/python3
"""Signs in and sends one IQ set with a raw payload, then prints the answer as JSON.

Used by tests that play a third party (e.g. someone trying to hijack a Jingle session):

    /usr/bin/python3 tests/peers/send_iq.py --jid mallory@localhost --password mallory \
        --host 127.0.0.1 --port P --ca CA --to bob@localhost/res --payload '<jingle .../>'

Output: {"type": "result"} or {"type": "error", "condition": "item-not-found",
"jingle_error": "unknown-session"}.
"""

import argparse
import asyncio
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET as SET

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"


class Sender(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(f"{args.jid}/third-party", args.password)
        self.args = args
        self.outcome = None
        if args.ca:
            self.ca_certs = Path(args.ca)
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda _e: self.fail("authentication failed"))

    def fail(self, message):
        self.outcome = {"type": "failure", "message": message}
        self.disconnect()

    async def start(self, _event):
        iq = self.make_iq_set(ito=self.args.to)
        iq.append(SET.fromstring(self.args.payload))
        try:
            await iq.send(timeout=10)
            self.outcome = {"type": "result"}
        except IqError as err:
            error = err.iq.xml.find("{jabber:client}error")
            condition = jingle = None
            if error is not None:
                for child in error:
                    ns, _, name = child.tag[1:].partition("}")
                    if ns == STANZAS and name != "text":
                        condition = name
                    elif ns == JINGLE_ERRORS:
                        jingle = name
            self.outcome = {"type": "error", "condition": condition, "jingle_error": jingle}
        except IqTimeout:
            self.outcome = {"type": "timeout"}
        self.disconnect()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--ca")
    p.add_argument("--to", required=True)
    p.add_argument("--payload", required=True)
    args = p.parse_args()
    ET.fromstring(args.payload)  # fail early on malformed XML
    xmpp = Sender(args)
    xmpp.connect((args.host, args.port))
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, timeout=30))
    print(json.dumps(xmpp.outcome or {"type": "failure", "message": "no answer"}), flush=True)
    return 0 if xmpp.outcome and xmpp.outcome["type"] in ("result", "error") else 1


if __name__ == "__main__":
    sys.exit(main())
