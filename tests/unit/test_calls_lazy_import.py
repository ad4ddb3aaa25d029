"""livekit-api is loaded only by a process with a LiveKit configured: the roles' modules, and
what they do with calls off, leave it out of every other process (each check in a fresh
interpreter, since this one has it loaded already)."""

from __future__ import annotations

import json
import subprocess
import sys

#: Prints whether livekit (or the protobuf runtime it brings) got loaded.
_LOADED = "import json; print(json.dumps(sorted(m for m in ('livekit', 'google.protobuf') if m in sys.modules)))"


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys\n{code}\n{_LOADED}"], capture_output=True, text=True,
                         check=True).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_importing_every_role_and_parley_dev_does_not_load_livekit():
    roles = "import parley.app.embedded, parley.app.roles, parley.app.up, gateway.app, calls.service"
    assert _loaded_after(roles) == []


def test_calls_off_builds_no_calls_role_and_no_join_minter_without_loading_livekit():
    code = ("from calls.join import JoinMinter, capabilities\n"
            "from parley.app.roles import calls_service\n"
            "from parley.config import Settings\n"
            "s = Settings()\n"
            "assert JoinMinter.from_settings(s) is None and calls_service(s, None, None, None, 'calls') is None\n"
            "assert not capabilities(s).calls")
    assert _loaded_after(code) == []


def test_a_configured_livekit_loads_it_where_tokens_are_made_and_the_calls_role_is_built():
    code = ("from calls.join import JoinMinter\n"
            "from calls import state as S\n"
            "from calls.tokens import Role\n"
            "from parley.app.roles import calls_service\n"
            "from parley.config import Settings\n"
            "from parley.frames import Media\n"
            "s = Settings(livekit_url='ws://lk', livekit_api_key='k', livekit_api_secret='s' * 32)\n"
            "minter = JoinMinter.from_settings(s)\n"
            "assert 'livekit' not in sys.modules\n"
            "call = S.start(call_id='c-1', conv='c', media=Media.AUDIO, initiator='a', device='d', callees=['b'],\n"
            "               direct=True, max_participants=2, ring_timeout_ms=1000, now=0).call\n"
            "assert minter.join(call, user='a', device='d', name='A', role=Role.SPEAKER, now_s=0).token\n"
            "assert 'livekit' in sys.modules\n"
            "assert calls_service(s, None, None, None, 'calls') is not None")
    assert _loaded_after(code) == ["google.protobuf", "livekit"]
