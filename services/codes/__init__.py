"""一码通: person, enterprise and door-plate codes, and the scan that resolves them
(docs/codes.md). One module per reason to change:

- ``tokens``   signing and checking person tokens, long-lived tokens' hashes and stored
               copies, code URLs, the token in what a camera read;
- ``images``   QR PNG / SVG, the WeChat mini-program code (wxacode);
- ``issuing``  issuing and revoking person, enterprise and door-plate codes;
- ``views``    what each code shows and the Redis entries carrying it (invalidation too);
- ``scan``     the scan: its Lua script, the answer spliced from the entries, ``person_of_code``;
- ``scanlog``  scan-log lines, the buffer flush, the journal replay, ``scans_of_my_code``.

Callers use the names re-exported here (``from services import codes``; ``codes.scan(...)``).
"""

from services.codes.images import IssuedQr, qr_png, qr_svg
from services.codes.issuing import (
    current_enterprise_code,
    doorplate_codes,
    issue_doorplate_codes,
    issue_enterprise_code,
    issue_person_code,
    revoke_doorplate_code,
    revoke_enterprise_code,
    wxacode,
)
from services.codes.scan import Scanned, person_of_code, scan
from services.codes.scanlog import (
    LOG_BUFFER,
    ScanSeen,
    flush_scan_logs,
    hall_name,
    replay_scan_journal,
    role_label,
    scans_of_my_code,
)
from services.codes.tokens import (
    LONG_PREFIX,
    PERSON_PREFIX,
    code_url,
    extract_token,
    sign_person_token,
    token_hash,
    verify_person_token,
)
from services.codes.views import invalidate_views

__all__ = [
    "LOG_BUFFER",
    "LONG_PREFIX",
    "PERSON_PREFIX",
    "IssuedQr",
    "ScanSeen",
    "Scanned",
    "code_url",
    "current_enterprise_code",
    "doorplate_codes",
    "extract_token",
    "flush_scan_logs",
    "hall_name",
    "invalidate_views",
    "issue_doorplate_codes",
    "issue_enterprise_code",
    "issue_person_code",
    "person_of_code",
    "qr_png",
    "qr_svg",
    "replay_scan_journal",
    "revoke_doorplate_code",
    "revoke_enterprise_code",
    "role_label",
    "scan",
    "scans_of_my_code",
    "sign_person_token",
    "token_hash",
    "verify_person_token",
    "wxacode",
]
