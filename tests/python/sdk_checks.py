"""What the *_sdk.py scripts share: the official SDK client for OA_HOST and OA_APIKEY, the
expected values the Rust test passes as JSON, and the check that prints `ok` or fails.
"""

import json
import os
import sys

from openalgo import api

HOST = os.environ["OA_HOST"]
APIKEY = os.environ["OA_APIKEY"]
client = api(api_key=APIKEY, host=HOST)


def expected_values(variable):
    """The JSON object of the environment variable `variable`."""
    return json.loads(os.environ[variable])


def fail(message):
    """Prints the failure and exits non-zero."""
    print(f"FAIL {message}")
    sys.exit(1)


def check(name, result, condition):
    """Fails unless `result` is a success body for which `condition` holds."""
    if not isinstance(result, dict) or result.get("status") != "success" or not condition(result):
        fail(f"{name}: {result!r}")
    print(f"ok   {name}")
