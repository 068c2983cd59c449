#!/usr/bin/env python3
"""imgserver: serves a folder on 127.0.0.1 for the cluster test, slowly, counting requests.

Usage: /usr/bin/python3 tests/cluster/imgserver.py DIR DELAY_SECONDS LOG

Prints its port on stdout, then serves DIR (the query string is ignored, so one image has
many URLs) until killed, waiting DELAY_SECONDS before each answer so that a task of the
Slurm test is still running when the test kills it. Each request appends one line, its path,
to LOG.
"""
import functools
import http.server
import sys
import threading
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    delay = 0.0
    log_path = ""
    lock = threading.Lock()

    def do_GET(self):
        with self.lock, open(self.log_path, "a") as f:
            f.write(self.path + "\n")
        time.sleep(self.delay)
        super().do_GET()

    def log_message(self, *args):
        pass


def main(folder, delay, log_path):
    Handler.delay, Handler.log_path = float(delay), log_path
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
