#!/usr/bin/env python3
"""A stand-in for systemd's fd store, for tests where systemd cannot run.

    fake_systemd.py --state DIR [--restart-delay S] -- CMD ARGS...

Creates the datagram socket DIR/notify.sock and runs CMD with NOTIFY_SOCKET
pointing at it, like a `Type=notify` service with `FileDescriptorStoreMax=`.
What it understands of sd_notify(3):
  FDSTORE=1 (+ FDNAME=, FDPOLL=0)  keeps the fds of the message by name (one
                                   per name here: a new one replaces the old)
  FDSTOREREMOVE=1 + FDNAME=        closes and forgets that name
  READY=1, STOPPING=1              counted
A stored fd that reports POLLHUP or POLLERR is dropped, as systemd does,
unless it came with FDPOLL=0. After every message DIR/status.json is written
(atomically):
  {"ready": n, "stopping": n, "fds": [names], "pid": child pid, "starts": n}
When CMD exits it is started again with the stored fds at 3.. and LISTEN_FDS,
LISTEN_FDNAMES and LISTEN_PID (its own pid) set. On SIGTERM (or SIGINT) the
child gets SIGTERM, SIGKILL after 10 s, and this exits without restarting.
Only the standard library.
"""
import argparse
import array
import json
import os
import select
import signal
import socket
import sys
import time

SCM_MAX_FD = 253


class Store:
    def __init__(self, state):
        self.state = state
        self.fds = {}  # name -> (fd, poll)
        self.ready = 0
        self.stopping = 0
        self.pid = 0
        self.starts = 0

    def write_status(self):
        st = {"ready": self.ready, "stopping": self.stopping,
              "fds": list(self.fds), "pid": self.pid, "starts": self.starts}
        tmp = os.path.join(self.state, "status.json.tmp")
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, os.path.join(self.state, "status.json"))

    def drop(self, name):
        ent = self.fds.pop(name, None)
        if ent:
            os.close(ent[0])

    def message(self, data, fds):
        fields = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        name = fields.get("FDNAME", "stored")
        if fields.get("FDSTORE") == "1" and fds:
            self.drop(name)
            poll = fields.get("FDPOLL") != "0"
            self.fds[name] = (fds[0], poll)
            for fd in fds[1:]:  # one per name here
                os.close(fd)
            fds = []
        if fields.get("FDSTOREREMOVE") == "1":
            self.drop(name)
        if fields.get("READY") == "1":
            self.ready += 1
        if fields.get("STOPPING") == "1":
            self.stopping += 1
        for fd in fds:  # fds with a message that does not store them
            os.close(fd)

    def drop_hung_up(self):
        polled = [(n, fd) for n, (fd, poll) in self.fds.items() if poll]
        if not polled:
            return False
        p = select.poll()
        for _, fd in polled:
            p.register(fd, 0)
        bad = {fd for fd, ev in p.poll(0) if ev & (select.POLLHUP | select.POLLERR)}
        gone = [n for n, fd in polled if fd in bad]
        for n in gone:
            self.drop(n)
        return bool(gone)


def start(store, cmd, notify_path):
    names = list(store.fds)
    fds = [store.fds[n][0] for n in names]
    pid = os.fork()
    if pid == 0:
        try:
            # Out of the way of 3.., then into place, inheritable.
            high = [os.dup(fd) for fd in fds]
            base = 3 + len(fds) + 16
            high = [os.dup2(fd, base + i) for i, fd in enumerate(high)]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i, inheritable=True)
            for fd in high:
                os.close(fd)
            env = dict(os.environ)
            env["NOTIFY_SOCKET"] = notify_path
            for k in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
                env.pop(k, None)
            if fds:
                env["LISTEN_FDS"] = str(len(fds))
                env["LISTEN_FDNAMES"] = ":".join(names)
                env["LISTEN_PID"] = str(os.getpid())
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.execvpe(cmd[0], cmd, env)
        except BaseException as e:  # noqa: BLE001 - report and leave the fork
            print(f"fake_systemd: exec {cmd[0]}: {e}", file=sys.stderr)
        os._exit(127)
    store.pid = pid
    store.starts += 1
    store.write_status()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state", required=True)
    ap.add_argument("--restart-delay", type=float, default=0.1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command after --")
    os.makedirs(a.state, exist_ok=True)
    notify_path = os.path.join(a.state, "notify.sock")
    if os.path.exists(notify_path):
        os.unlink(notify_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.setblocking(False)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    got = {"term": False}

    def on_term(signum, frame):
        got["term"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGCHLD, lambda s, f: None)

    store = Store(a.state)
    start(store, cmd, notify_path)
    restart_at = None
    while True:
        timeout = 0.2
        if restart_at is not None:
            timeout = max(0.0, min(timeout, restart_at - time.monotonic()))
        r, _, _ = select.select([sock, wake_r], [], [], timeout)
        if wake_r in r:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        changed = False
        while True:
            try:
                data, anc, _, _ = sock.recvmsg(
                    4096, socket.CMSG_SPACE(SCM_MAX_FD * 4))
            except BlockingIOError:
                break
            fds = []
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    arr = array.array("i")
                    arr.frombytes(cdata[:len(cdata) - len(cdata) % arr.itemsize])
                    fds.extend(arr)
            store.message(data, fds)
            changed = True
        if store.drop_hung_up():
            changed = True
        if changed:
            store.write_status()
        if store.pid:
            try:
                pid, _ = os.waitpid(store.pid, os.WNOHANG)
            except ChildProcessError:
                pid = store.pid
            if pid == store.pid:
                store.pid = 0
                store.write_status()
                if not got["term"]:
                    restart_at = time.monotonic() + a.restart_delay
        if got["term"]:
            break
        if restart_at is not None and time.monotonic() >= restart_at:
            restart_at = None
            start(store, cmd, notify_path)

    if store.pid:
        os.kill(store.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(store.pid, os.WNOHANG)[0] == store.pid:
                break
            time.sleep(0.05)
        else:
            os.kill(store.pid, signal.SIGKILL)
            os.waitpid(store.pid, 0)
        store.pid = 0
    store.write_status()
    sock.close()
    os.unlink(notify_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
