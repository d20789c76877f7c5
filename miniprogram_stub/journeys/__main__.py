"""Walk every journey against a live server; exit non-zero on the first that fails."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx

from miniprogram_stub.client import Journeys
from miniprogram_stub.journeys import ALL


async def main(base_url: str, only: str | None) -> int:
    failed = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
        j = Journeys(http)
        for journey in ALL:
            if only and only not in journey.__name__:
                continue
            started = time.perf_counter()
            try:
                await journey(j)
            except Exception as exc:
                failed += 1
                print(f"FAIL {journey.__name__}: {exc}")
                continue
            print(f"ok   {journey.__name__} ({(time.perf_counter() - started) * 1000:.0f} ms)")
    print(f"journeys: {len(ALL) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--only", help="run journeys whose name contains this")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.base_url, args.only)))
