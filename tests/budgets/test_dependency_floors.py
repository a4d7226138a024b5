"""The version floors in pyproject.toml admit no grpcio or protobuf release that the committed
generated code (collector/budgets/proto/) refuses at import.

`budget_pb2_grpc.py` raises unless grpcio >= the grpcio-tools release that generated it;
`budget_pb2.py` asks protobuf's runtime check for a runtime at least as new as its gencode. A
floor below those lets pip install a combination in which `import collector.budgets` fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "collector" / "budgets" / "proto"


def _floor(requirements: list[str], name: str) -> Version:
    (requirement,) = [Requirement(text) for text in requirements if Requirement(text).name == name]
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
    assert floors, f"{requirement}: no lower bound"
    return max(floors)


def _grpc_generated_version() -> Version:
    tree = ast.parse((PROTO / "budget_pb2_grpc.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            "GRPC_GENERATED_VERSION"
        ]:
            return Version(ast.literal_eval(node.value))
    raise AssertionError("budget_pb2_grpc.py has no GRPC_GENERATED_VERSION")


def _protobuf_gencode_version() -> Version:
    text = (PROTO / "budget_pb2.py").read_text()
    pattern = (
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
        r"\s*(\d+),\s*(\d+),\s*(\d+),"
    )
    match = re.search(pattern, text)
    assert match, "budget_pb2.py has no protobuf runtime version check"
    return Version(".".join(match.groups()))


def test_floors_match_the_committed_generated_code() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dependencies = project["dependencies"]
    grpc_generated = _grpc_generated_version()
    assert _floor(dependencies, "grpcio") >= grpc_generated
    # The health service is registered on the same server; its releases follow grpcio's.
    assert _floor(dependencies, "grpcio-health-checking") >= grpc_generated
    assert _floor(dependencies, "protobuf") >= _protobuf_gencode_version()
    # Regenerating (docs/budgets.md) with the floor of grpcio-tools gives the committed code.
    assert _floor(project["optional-dependencies"]["test"], "grpcio-tools") >= grpc_generated


def test_the_installed_releases_satisfy_the_generated_code() -> None:
    import google.protobuf
    import grpc

    assert Version(grpc.__version__) >= _grpc_generated_version()
    assert Version(google.protobuf.__version__) >= _protobuf_gencode_version()
    from collector.budgets.proto import budget_pb2, budget_pb2_grpc

    assert budget_pb2_grpc.BudgetServiceStub and budget_pb2.CheckRequest(run_id="r").run_id == "r"
