# ruff: noqa: SIM115, PLC0415, E501, BLE001 -- a probe loaded into the daemon: imports only when signalled, never raises
"""A memory probe loaded by the daemons ``drive.py`` starts (it is on their PYTHONPATH): SIGUSR1
appends RSS, glibc's ``mallinfo2``, pymalloc's statistics and (with MEMPROBE_TRACE=N)
tracemalloc's top lines to MEMPROBE_OUT. Inert without MEMPROBE_OUT."""

import os
import signal

if os.environ.get("MEMPROBE_OUT"):
    import gc
    import tracemalloc

    _n = int(os.environ.get("MEMPROBE_TRACE", "0") or 0)
    if _n:
        tracemalloc.start(_n)

    def _rss():
        got = {}
        for line in open("/proc/self/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                got[k] = int(v.split()[0]) / 1024
        return got

    def _dump(sig, frame):
        out = os.environ["MEMPROBE_OUT"]
        with open(out, "a") as f:
            f.write(f"=== {_rss()} gc-objects={len(gc.get_objects())}\n")
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")

                class Mallinfo2(ctypes.Structure):
                    _fields_ = [
                        (n, ctypes.c_size_t)
                        for n in (
                            "arena",
                            "ordblks",
                            "smblks",
                            "hblks",
                            "hblkhd",
                            "usmblks",
                            "fsmblks",
                            "uordblks",
                            "fordblks",
                            "keepcost",
                        )
                    ]

                libc.mallinfo2.restype = Mallinfo2
                mi = libc.mallinfo2()
                f.write(
                    f"mallinfo2 arena={mi.arena / 1e6:.1f}MB hblkhd={mi.hblkhd / 1e6:.1f}MB used={mi.uordblks / 1e6:.1f}MB free={mi.fordblks / 1e6:.1f}MB keepcost={mi.keepcost / 1e6:.1f}\n"
                )
            except Exception as exc:
                f.write(f"mallinfo2 failed {exc}\n")
            f.flush()
            try:
                import sys

                saved = os.dup(2)
                os.dup2(f.fileno(), 2)
                try:
                    sys._debugmallocstats()
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
            except Exception as exc:
                f.write(f"debugmallocstats failed {exc}\n")
            if tracemalloc.is_tracing():
                snap = tracemalloc.take_snapshot()
                snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
                cur, peak = tracemalloc.get_traced_memory()
                f.write(f"traced current={cur / 1e6:.1f}MB peak={peak / 1e6:.1f}MB\n")
                for key in ("filename", "lineno"):
                    for st in snap.statistics(key)[:40]:
                        f.write(f"  {key} {st.size / 1e6:8.2f} MB {st.count:8d}  {st.traceback}\n")
                if _n > 1:
                    for st in snap.statistics("traceback")[:15]:
                        f.write(f"  tb {st.size / 1e6:8.2f} MB {st.count:8d}\n")
                        for line in st.traceback.format()[-2 * _n :]:
                            f.write(f"      {line}\n")
            f.write("\n")

    signal.signal(signal.SIGUSR1, _dump)

if os.environ.get("MEMPROBE_TRIM"):
    import ctypes
    import threading
    import time as _time

    def _trim():
        libc = ctypes.CDLL("libc.so.6")
        while True:
            _time.sleep(float(os.environ["MEMPROBE_TRIM"]))
            libc.malloc_trim(0)

    threading.Thread(target=_trim, daemon=True).start()
