"""The committed generated code is what the committed .proto and the command in it produce."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = "collector/budgets/proto/budget.proto"


def test_generated_code_matches_the_proto(tmp_path):
    command = re.search(r"//\s+(python -m grpc_tools\.protoc .*)", (ROOT / PROTO).read_text()).group(1)
    args = command.split()[1:]  # run it with this interpreter
    args = [arg.replace("=.", f"={tmp_path}") if arg.endswith("=.") else arg for arg in args]
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)
    for name in ("budget_pb2.py", "budget_pb2_grpc.py"):
        fresh = (tmp_path / "collector/budgets/proto" / name).read_text()
        committed = (ROOT / "collector/budgets/proto" / name).read_text()
        assert fresh == committed, f"{name} is stale: regenerate with the command in {PROTO}"
