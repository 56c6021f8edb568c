"""The committed generated protobuf code matches what `make proto` produces from the sources."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = ROOT / "proto" / "fedcredit" / "v1"


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in PROTO_DIR.glob("*.proto"))
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".",
         f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
         f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
         f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--mypy_out={tmp_path}",
         f"--mypy_grpc_out={tmp_path}", *protos],
        cwd=ROOT, check=True, capture_output=True)
    generated = sorted((tmp_path / "proto" / "fedcredit" / "v1").glob("*_pb2*"))
    assert generated, "protoc produced nothing"
    stale = [g.name for g in generated
             if (PROTO_DIR / g.name).read_bytes() != g.read_bytes()]
    assert not stale, f"generated code is stale, run `make proto`: {stale}"
    committed = {p.name for p in PROTO_DIR.glob("*_pb2*")}
    assert committed == {g.name for g in generated}
