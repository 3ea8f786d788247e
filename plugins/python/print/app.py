"""`python-print`: a Python interceptor that adds a header to every produced record and talks
on stdout and stderr like any Python program: `print()` on each call, and an uncaught exception
when configured with {"raise": true}. The gateway logs both as the interceptor's own lines.

Built with componentize-py (see the Makefile target `python-plugin`).
"""

import json
import sys

import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def __init__(self):
        self.fail = False
        self.header = types.Header(key="x-python", value=b"1")

    def describe(self) -> types.Capabilities:
        return types.Capabilities(hooks=types.Hooks.PRODUCE, api_keys=[])

    def configure(self, config: str) -> None:
        settings = json.loads(config or "{}")
        self.fail = bool(settings.get("raise", False))
        print(f"python-print configured: raise={self.fail}")

    def on_request(self, ctx, body):
        return types.RequestAction_Forward()

    def on_response(self, ctx, body):
        return types.ResponseAction_Forward()

    def on_produce(self, ctx: types.Context, records: types.Records) -> None:
        count = 0
        for p in range(records.partition_count()):
            for r in range(records.record_count(p)):
                records.add_header(p, r, self.header)
                count += 1
        print(f"python-print: {ctx.interceptor} tagged {count} records")
        print("python-print: a warning on stderr", file=sys.stderr)
        if self.fail:
            raise ValueError("python-print raised on purpose")

    def on_fetch(self, ctx, records) -> None:
        return None
