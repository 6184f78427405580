#!/usr/bin/env python3
"""pull_hub.py - a loopback stand-in for the Hugging Face hub, for tests/pull*.sh.

Serves the files under ROOT/OWNER/REPO/PATH the way huggingface.co does for LFS files:
  GET  /api/models/OWNER/REPO                  {"siblings": [{"rfilename": PATH}, ...]}
  HEAD|GET /OWNER/REPO/resolve/main/PATH       302 to /cdn/OWNER/REPO/PATH, with the LFS facts
                                               X-Linked-Etag: "<sha256>", X-Linked-Size, ETag
  HEAD|GET /cdn/OWNER/REPO/PATH                the bytes; Accept-Ranges, Range -> 206
Errors as the hub sends them: 404 with X-Error-Code EntryNotFound / RepoNotFound, 401 with
X-Error-Code GatedRepo and X-Error-Message.

Behaviour chosen by the repo's name, so one server serves every case of a test:
  *gated*    needs "Authorization: Bearer <--token>" (401 without, 403 with a wrong one)
  *badsha*   advertises a SHA-256 that is not the file's
  *drop*     the first GET of each file sends half the bytes and closes the connection
  *norange*  ignores Range (200 with the whole file, no Accept-Ranges)
  *slow*     sends the body in 16 KiB pieces, 20 ms apart (for Ctrl-C tests)
--rate B/S paces every body like that (the first-run test's progress and Esc).
Every request is logged as one JSON line to --log: method, path, range, auth (bool).
The port (chosen by the system) is written to --port-file once the server listens.
"""
import argparse
import hashlib
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    dropped = set()          # files whose first GET was already cut (the *drop* repos)
    lock = threading.Lock()

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def record(self):
        entry = {"method": self.command, "path": self.path,
                 "range": self.headers.get("Range"),
                 "auth": self.headers.get("Authorization") is not None}
        with Hub.lock, open(self.server.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def reply(self, code, headers=None, body=b""):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, code, err_code, msg):
        body = json.dumps({"error": msg}).encode()
        self.reply(code, {"X-Error-Code": err_code, "X-Error-Message": msg,
                          "Content-Type": "application/json"}, body)

    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def handle_any(self):
        self.record()
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = path.strip("/").split("/")
        root = self.server.root
        if len(parts) == 4 and parts[:2] == ["api", "models"]:
            repo_dir = os.path.join(root, parts[2], parts[3])
            if not os.path.isdir(repo_dir):
                return self.error(404, "RepoNotFound", "Repository not found")
            files = []
            for d, _, names in os.walk(repo_dir):
                for n in names:
                    files.append(os.path.relpath(os.path.join(d, n), repo_dir))
            body = json.dumps({"id": parts[2] + "/" + parts[3],
                               "siblings": [{"rfilename": f} for f in sorted(files)]})
            return self.reply(200, {"Content-Type": "application/json"}, body.encode())
        if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
            return self.resolve(parts[0], parts[1], "/".join(parts[4:]))
        if len(parts) >= 4 and parts[0] == "cdn":
            return self.cdn(parts[1], parts[2], "/".join(parts[3:]))
        return self.error(404, "EntryNotFound", "no such route")

    def file_of(self, owner, repo, rel):
        p = os.path.normpath(os.path.join(self.server.root, owner, repo, rel))
        if not p.startswith(os.path.abspath(self.server.root) + os.sep) or not os.path.isfile(p):
            return None
        return p

    def resolve(self, owner, repo, rel):
        if not os.path.isdir(os.path.join(self.server.root, owner, repo)):
            return self.error(404, "RepoNotFound", "Repository not found")
        if "gated" in repo:
            auth = self.headers.get("Authorization")
            if auth is None:
                return self.error(401, "GatedRepo", "Access to model %s/%s is restricted. "
                                  "You must have access to it and be authenticated." % (owner, repo))
            if auth != "Bearer " + self.server.token:
                return self.error(403, "GatedRepo", "Invalid credentials")
        p = self.file_of(owner, repo, rel)
        if p is None:
            return self.error(404, "EntryNotFound", "Entry not found")
        with open(p, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        if "badsha" in repo:
            sha = hashlib.sha256(b"not the file").hexdigest()
        self.reply(302, {"Location": "/cdn/%s/%s/%s" % (owner, repo, urllib.parse.quote(rel)),
                         "X-Linked-Etag": '"%s"' % sha,
                         "X-Linked-Size": str(os.path.getsize(p)),
                         "ETag": '"%s"' % sha[:40]})

    def cdn(self, owner, repo, rel):
        p = self.file_of(owner, repo, rel)
        if p is None:
            return self.error(404, "EntryNotFound", "Entry not found")
        with open(p, "rb") as f:
            data = f.read()
        size = len(data)
        start = 0
        rng = self.headers.get("Range")
        code = 200
        headers = {"Content-Type": "application/octet-stream"}
        if "norange" not in repo:
            headers["Accept-Ranges"] = "bytes"
            if rng and rng.startswith("bytes="):
                first, _, last = rng[6:].partition("-")
                start = int(first)
                end = int(last) if last else size - 1
                if start >= size:
                    return self.reply(416, {"Content-Range": "bytes */%d" % size})
                data = data[start:end + 1]
                code = 206
                headers["Content-Range"] = "bytes %d-%d/%d" % (start, start + len(data) - 1, size)
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        key = (owner, repo, rel)
        with Hub.lock:
            cut = "drop" in repo and key not in Hub.dropped
            Hub.dropped.add(key)
        if cut:
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if "slow" in repo or self.server.rate:
            piece = 16384 if "slow" in repo else 65536
            pause = 0.02 if "slow" in repo else piece / self.server.rate
            try:
                for i in range(0, len(data), piece):
                    self.wfile.write(data[i:i + piece])
                    self.wfile.flush()
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (the Ctrl-C test)
            return
        self.wfile.write(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--token", default="hf_test_secret")
    ap.add_argument("--rate", type=float, default=0,
                    help="bytes per second for every file body (0: as fast as possible)")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    srv.daemon_threads = True
    srv.root = os.path.abspath(a.root)
    srv.log_path = a.log
    srv.token = a.token
    srv.rate = a.rate
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
