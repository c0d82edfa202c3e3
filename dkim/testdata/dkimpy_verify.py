# Verifies DKIM signatures with dkimpy, offline: reads JSON from stdin,
# {"records": {"sel._domainkey.example.com": "v=DKIM1; ..."}, "messages": [base64, ...]},
# and prints, for each message, a list with one {"ok": bool, "error": str}
# per DKIM-Signature field, topmost first.
import base64, json, logging, sys
import dkim

req = json.load(sys.stdin)
records = req["records"]

def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    rec = records.get(name.rstrip(".").lower())
    return rec.encode() if rec is not None else None

class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.msgs = []
    def emit(self, record):
        self.msgs.append(record.getMessage())

out = []
for m in req["messages"]:
    msg = base64.b64decode(m)
    results = []
    n = len([1 for line in msg.split(b"\r\n") if line.lower().startswith(b"dkim-signature:")])
    for idx in range(n):
        cap = Capture()
        log = logging.getLogger("dkimpy-%d" % len(out))
        log.handlers = [cap]
        log.setLevel(logging.DEBUG)
        log.propagate = False
        d = dkim.DKIM(msg, logger=log)
        try:
            ok = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
            err = "" if ok else "; ".join(x for x in cap.msgs if "sig" not in x.lower()[:4])[-300:]
        except Exception as e:
            ok, err = False, "%s: %s" % (type(e).__name__, e)
        results.append({"ok": ok, "error": err})
    out.append(results)
json.dump(out, sys.stdout)
