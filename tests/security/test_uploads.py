"""No file of the server through a run (issue 9 point 1, issue 13 point 3): an `upload` step
gives a page a `type: file` parameter's uploaded file, or a file inside GLASSBOX_UPLOAD_DIR —
nothing else. Real `glassbox serve` and `glassbox run`, real Chromium, a page that records what
it received."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api.conftest import (
    Service,
    error_fields,
    glassbox_command,
    running_service,
    wait_status,
)
from tests.probe_site import ProbeSite

LIMIT = 200_000
PDF = b"%PDF-1.4\n% a small document\n" + bytes(range(256)) * 40


@pytest.fixture(scope="module")
def probe() -> Iterator[ProbeSite]:
    with ProbeSite() as site:
        yield site


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("upload-dir")
    (directory / "notes.txt").write_bytes(b"notes from the upload dir\n")
    (directory / "sub").mkdir()
    (directory / "sub" / "deep.csv").write_bytes(b"a,b\n1,2\n")
    (directory / "passwd-link").symlink_to("/etc/passwd")
    return directory


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, upload_dir: Path) -> Iterator[Service]:
    with running_service(
        tmp_path_factory.mktemp("serve-uploads"),
        extra_env={
            "GLASSBOX_UPLOAD_DIR": str(upload_dir),
            "GLASSBOX_MAX_UPLOAD_BYTES": str(LIMIT),
        },
    ) as service:
        yield service


@pytest.fixture
def client(served: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.api, timeout=30) as http:
        yield http


def upload_workflow(
    url: str, file: str = "{{ attachment }}", *, parameter: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Opens the probe's upload form, gives it `file` and submits it."""
    parameters = {"attachment": parameter or {"type": "file"}} if "attachment" in file else {}
    return {
        "title": "Send a file",
        "url": url,
        "timeout_s": 60,
        "parameters": parameters,
        "blocks": [
            {
                "label": "send",
                "type": "action",
                "steps": [
                    {"goto": "{{ url }}upload.html"},
                    {"upload": {"selector": "#file", "file": file}},
                    {"click": {"role": "button", "name": "Upload"}},
                    {"wait_for": {"selector": "#sha256"}},
                ],
            },
            {
                "label": "read",
                "type": "extract",
                "fields": {"sha256": {"selector": "#sha256", "first": True}},
            },
        ],
    }


FILE_FIELD = "workflow.blocks[0].steps[1].upload.file"


def send(client: httpx.Client, data: bytes, name: str, kind: str) -> httpx.Response:
    return client.post("/uploads", files={"file": (name, data, kind)})


def test_an_uploaded_file_reaches_the_page_and_is_the_run_s_input(
    client: httpx.Client, served: Service, probe: ProbeSite
) -> None:
    answer = send(client, PDF, "report.pdf", "application/pdf")
    assert answer.status_code == 201, answer.text
    upload = answer.json()
    assert upload["id"].startswith("upl_")
    assert (upload["name"], upload["size"]) == ("report.pdf", len(PDF))
    assert upload["sha256"] == hashlib.sha256(PDF).hexdigest()

    since = probe.mark()
    workflow = upload_workflow(
        probe.url, parameter={"type": "file", "accept": [".pdf"], "max_bytes": 100_000}
    )
    created = client.post(
        "/runs", json={"workflow": workflow, "parameters": {"attachment": upload["id"]}}
    )
    assert created.status_code == 201, created.text
    record = wait_status(client, created.json()["id"])
    assert record["status"] == "completed", record["failure_reason"]
    hit = probe.wait_for("/upload", since=since)
    assert [(f.filename, f.data) for f in hit.files] == [("report.pdf", PDF)]
    assert record["extracted_information"] == {"sha256": hashlib.sha256(PDF).hexdigest()}
    inputs = [a for a in record["artifacts"] if a["kind"] == "input"]
    assert [(a["name"], a["sha256"]) for a in inputs] == [("report.pdf", upload["sha256"])]
    assert httpx.get(served.base_url + inputs[0]["url"], timeout=30).content == PDF
    # The generated script uploads a file of that name beside it, not a path of the worker.
    code = client.get(f"/runs/{record['id']}/code").text
    assert "set_input_files(['report.pdf'])" in code, code


def test_a_file_inside_the_upload_dir_reaches_the_page(
    client: httpx.Client, probe: ProbeSite, upload_dir: Path
) -> None:
    for file, data in (
        ("notes.txt", b"notes from the upload dir\n"),
        (str(upload_dir / "sub" / "deep.csv"), b"a,b\n1,2\n"),  # absolute, inside
    ):
        since = probe.mark()
        created = client.post("/runs", json={"workflow": upload_workflow(probe.url, file)})
        assert created.status_code == 201, created.text
        record = wait_status(client, created.json()["id"])
        assert record["status"] == "completed", record["failure_reason"]
        assert probe.wait_for("/upload", since=since).files[0].data == data


@pytest.mark.parametrize(
    "file",
    [
        "/etc/passwd",
        "~/.bashrc",
        "~root/.profile",
        "../serve-uploads0/data/secret.key",
        "sub/../../etc/passwd",
        "passwd-link",  # a symlink out of the directory
        "/proc/self/environ",
        "",
    ],
)
def test_server_paths_outside_the_upload_dir_are_refused_naming_the_field(
    client: httpx.Client, probe: ProbeSite, file: str
) -> None:
    answer = client.post("/runs", json={"workflow": upload_workflow(probe.url, file)})
    assert error_fields(answer) == [FILE_FIELD]


def test_a_template_rendering_to_a_server_path_is_refused(
    client: httpx.Client, probe: ProbeSite
) -> None:
    workflow = upload_workflow(probe.url, "{{ where }}")
    workflow["parameters"] = {"where": {"type": "string", "default": "notes.txt"}}
    accepted = client.post("/runs", json={"workflow": workflow})
    assert accepted.status_code == 201, accepted.text
    client.post(f"/runs/{accepted.json()['id']}/cancel")
    answer = client.post(
        "/runs", json={"workflow": workflow, "parameters": {"where": "/etc/shadow"}}
    )
    assert error_fields(answer) == [FILE_FIELD]
    # An upload id that is not a file parameter's value is no input of the run.
    answer = client.post(
        "/runs", json={"workflow": workflow, "parameters": {"where": "upl_" + "0" * 26}}
    )
    assert error_fields(answer) == [FILE_FIELD]


def test_a_symlink_swapped_in_after_validation_is_refused_when_the_step_runs(
    client: httpx.Client, probe: ProbeSite, upload_dir: Path
) -> None:
    target = upload_dir / "swapped.txt"
    target.write_bytes(b"harmless\n")
    workflow = upload_workflow(probe.url, "swapped.txt")
    workflow["blocks"][0]["steps"].insert(0, {"wait": {"seconds": 2}})
    since = probe.mark()
    created = client.post("/runs", json={"workflow": workflow})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    wait_status(client, run_id, {"running"})
    target.unlink()
    target.symlink_to("/etc/passwd")
    record = wait_status(client, run_id)
    assert record["status"] == "failed"
    assert "outside GLASSBOX_UPLOAD_DIR" in record["failure_reason"]
    assert "step 3 upload" in record["failure_reason"]
    sent = [f for hit in probe.hits("/upload", since=since) for f in hit.files]
    assert not [f for f in sent if f.filename in ("swapped.txt", "passwd") or b"root:" in f.data]


def test_file_parameters_are_checked_against_the_upload(
    client: httpx.Client, probe: ProbeSite
) -> None:
    text_upload = send(client, b"plain words", "words.txt", "text/plain").json()["id"]
    pdf_upload = send(client, PDF, "report.pdf", "application/pdf").json()["id"]
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"type": "file", "accept": [".pdf", "image/*"]}, text_upload),
        ({"type": "file", "max_bytes": 100}, pdf_upload),
        ({"type": "file"}, "upl_" + "1" * 26),  # no such upload
        ({"type": "file"}, "/etc/passwd"),  # not an upload id
        ({"type": "file"}, 42),
    ]
    for spec, value in cases:
        workflow = upload_workflow(probe.url, parameter=spec)
        answer = client.post(
            "/runs", json={"workflow": workflow, "parameters": {"attachment": value}}
        )
        assert error_fields(answer) == ["parameters.attachment"], (spec, value, answer.text)
    # A file parameter is required unless marked optional, and takes no default.
    answer = client.post("/runs", json={"workflow": upload_workflow(probe.url)})
    assert error_fields(answer) == ["parameters.attachment"]
    # (Fields of the workflow's `parameters` are named like the request's, as everywhere.)
    workflow = upload_workflow(probe.url, parameter={"type": "file", "default": "/etc/passwd"})
    refused = client.post("/runs", json={"workflow": workflow})
    assert error_fields(refused) == ["parameters.attachment"]
    assert "no default" in refused.text
    workflow = upload_workflow(probe.url, parameter={"type": "string", "accept": [".pdf"]})
    refused = client.post("/runs", json={"workflow": workflow})
    assert error_fields(refused) == ["parameters.attachment"]
    assert "only valid with type: file" in refused.text


def test_uploads_over_the_limit_get_413_and_bad_forms_422(
    client: httpx.Client, served: Service
) -> None:
    answer = send(client, b"x" * (LIMIT + 1), "big.bin", "application/octet-stream")
    assert answer.status_code == 413, answer.text
    assert str(LIMIT) in answer.json()["detail"]
    assert send(client, b"x" * LIMIT, "fits.bin", "application/octet-stream").status_code == 201

    # Streamed without a length: cut off as it arrives.
    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="s.bin"\r\n\r\n'
        for _ in range(10):
            yield b"y" * 65536
        yield b"\r\n--b--\r\n"

    streamed = client.post(
        "/uploads",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert streamed.status_code == 413, streamed.text
    assert error_fields(client.post("/uploads", json={"file": "x"})) == ["file"]
    assert error_fields(client.post("/uploads", files={"other": ("a", b"a")})) == ["file"]
    # A hostile file name is reduced to a plain one.
    named = send(client, b"z", "../../etc/cron.d/evil\r\n.sh", "text/plain").json()
    assert "/" not in named["name"] and "\n" not in named["name"] and ".." not in named["name"]
    assert client.get(f"/uploads/{named['id']}").json()["name"] == named["name"]


def _cli(
    args: list[str], tmp_path: Path, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env.update({"GLASSBOX_DATA_DIR": str(tmp_path / "data"), **(env_extra or {})})
    return subprocess.run(
        [*glassbox_command(), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_glassbox_run_uploads_a_local_file_and_refuses_server_paths(
    tmp_path: Path, probe: ProbeSite
) -> None:
    flow = tmp_path / "send.yaml"
    flow.write_text(yaml.safe_dump(upload_workflow(probe.url)))
    (tmp_path / "letter.pdf").write_bytes(PDF)
    since = probe.mark()
    done = _cli(["run", str(flow), "--param", "attachment=@letter.pdf", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert probe.wait_for("/upload", since=since).files[0].data == PDF
    record = yaml.safe_load(done.stdout)
    assert [a["name"] for a in record["artifacts"] if a["kind"] == "input"] == ["letter.pdf"]

    missing = _cli(["run", str(flow), "--param", "attachment=@nope.pdf"], tmp_path)
    assert missing.returncode == 2 and "parameters.attachment" in missing.stderr

    # No GLASSBOX_UPLOAD_DIR: no server path at all, before anything runs.
    flow.write_text(yaml.safe_dump(upload_workflow(probe.url, "notes.txt")))
    refused = _cli(["run", str(flow)], tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "blocks[0].steps[1].upload.file" in refused.stderr
    assert "GLASSBOX_UPLOAD_DIR" in refused.stderr
    flow.write_text(yaml.safe_dump(upload_workflow(probe.url, "/etc/passwd")))
    refused = _cli(["run", str(flow)], tmp_path, {"GLASSBOX_UPLOAD_DIR": str(tmp_path)})
    assert refused.returncode == 2 and "outside GLASSBOX_UPLOAD_DIR" in refused.stderr
