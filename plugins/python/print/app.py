"""`python-print`: a Python interceptor that adds a header to every produced record and talks
on stdout and stderr like any Python program: `print()` on each call, and an uncaught exception
when configured with {"raise": true}. The gateway logs both as the interceptor's own lines.

Built with componentize-py (see the Makefile target `python-plugin`).
"""

import json
import sys

import wit_world
from wit_world.imports import types


# componentize-py creates a new `WitWorld` object for each call: state lives in the module.
SETTINGS = {"raise": False}
HEADER = types.Header(key="x-python", value=b"1")


class WitWorld(wit_world.WitWorld):

    def describe(self) -> types.Capabilities:
        return types.Capabilities(hooks=types.Hooks.PRODUCE, api_keys=[])

    def configure(self, config: str) -> None:
        settings = json.loads(config or "{}")
        SETTINGS["raise"] = bool(settings.get("raise", False))
        print(f"python-print configured: raise={SETTINGS['raise']}")

    def on_request(self, ctx, body):
        return types.RequestAction_Forward()

    def on_response(self, ctx, body):
        return types.ResponseAction_Forward()

    def on_produce(self, ctx: types.Context, records: types.Records) -> None:
        count = 0
        for p in range(records.partition_count()):
            for r in range(records.record_count(p)):
                records.add_header(p, r, HEADER)
                count += 1
        print(f"python-print: {ctx.interceptor} tagged {count} records")
        print("python-print: a warning on stderr", file=sys.stderr)
        if SETTINGS["raise"]:
            raise ValueError("python-print raised on purpose")

    def on_fetch(self, ctx, records) -> None:
        return None
