# The python3 check of test-daemon-restart.sh: imports many standard modules
# (read lazily from the image) and uses a few; prints one line that must match
# the same run on the host.
import argparse, asyncio, base64, bz2, collections, csv, dataclasses, datetime, decimal
import email.mime.multipart, email.parser, enum, fractions, gzip, hashlib, html.parser
import http.client, inspect, ipaddress, json, logging.handlers, lzma, mailbox, pathlib
import pickle, plistlib, pydoc, re, shlex, sqlite3, statistics, string, sys, tarfile
import textwrap, tomllib, typing, unittest, urllib.request, uuid, xml.dom.minidom
import xml.etree.ElementTree, zipfile, zlib

doc = {"n": [str(decimal.Decimal(i) / 7) for i in range(50)], "s": string.ascii_letters}
out = json.dumps(doc, sort_keys=True).encode()
packed = lzma.compress(bz2.compress(zlib.compress(out)))
assert zlib.decompress(bz2.decompress(lzma.decompress(packed))) == out
db = sqlite3.connect(":memory:")
db.execute("create table t (v text)")
db.executemany("insert into t values (?)", [(v,) for v in doc["n"]])
assert db.execute("select count(*) from t").fetchone()[0] == 50
print("imports ok", len(sys.modules) > 150, hashlib.sha256(out).hexdigest())
