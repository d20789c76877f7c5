"""A protocol-level clamd stand-in, run as its own process by the virus-scan tests:
``python tests/integration/fake_clamd.py <port>``. It speaks the ``zINSTREAM`` command the way
clamd does (4-byte big-endian chunk lengths, a zero length to finish, a NUL-terminated reply)
and reports the EICAR test signature as found, anything else as OK."""

from __future__ import annotations

import asyncio
import struct
import sys

EICAR = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    command = await reader.readuntil(b"\0")
    if command != b"zINSTREAM\0":
        writer.write(b"UNKNOWN COMMAND\0")
    else:
        data = b""
        while True:
            (size,) = struct.unpack("!L", await reader.readexactly(4))
            if size == 0:
                break
            data += await reader.readexactly(size)
        found = EICAR in data
        writer.write(b"stream: Eicar-Signature FOUND\0" if found else b"stream: OK\0")
    await writer.drain()
    writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
