"""The S3 Object Lock anchor, tested at the request level (botocore's Stubber: no S3 here).

Each checkpoint is a PutObject with ObjectLockMode=COMPLIANCE, a retain-until date,
Content-MD5 (S3 requires an integrity header on Object Lock writes) and
If-None-Match: * (never replaces an object); verification lists and reads them back.
"""

import base64
import hashlib
import io
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from costeff.audit import AuditLog, verify
from costeff.audit.anchor import S3Sink, sink_from_uri, trail_name
from costeff.errors import DependencyError, InputError
from workspace_support import env_home


@pytest.fixture
def s3():
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(client) as stub:
        yield client, stub


def _put_params(key):
    return {"Bucket": "audit-anchor", "Key": key, "Body": ANY, "ContentType": "application/json",
            "ContentMD5": ANY, "ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": ANY, "IfNoneMatch": "*"}


def test_each_checkpoint_is_a_compliance_locked_put(s3, tmp_path):
    client, stub = s3
    sent = []
    client.meta.events.register("before-parameter-build.s3.PutObject", lambda params, **_: sent.append(dict(params)))
    sink = S3Sink("audit-anchor", "prod/costeff", retain_days=30, client=client)
    log = AuditLog(tmp_path / "audit", anchor=sink, home=env_home())
    kid = f"{log.signer.key_id}/{trail_name(log.directory)}"
    # the writer first asks whether this folder's trail was retired (a deliberate fresh start)...
    stub.add_client_error("get_object", "NoSuchKey", "no such key", http_status_code=404,
                          expected_params={"Bucket": "audit-anchor",
                                           "Key": f"prod/costeff/identity/{kid}.retired.json"})
    # ...whether the anchor already names a trail for its key (a trail emptied or swapped)...
    stub.add_client_error("get_object", "NoSuchKey", "no such key", http_status_code=404,
                          expected_params={"Bucket": "audit-anchor", "Key": f"prod/costeff/identity/{kid}.json"})
    # ...looks once for checkpoints anchored but never written locally (a full disk, a crash)...
    stub.add_response("list_objects_v2", {"IsTruncated": False, "KeyCount": 0}, {"Bucket": "audit-anchor",
                                                                                 "Prefix": ANY})
    stub.add_response("put_object", {"ETag": '"0"'}, _put_params(ANY))  # ...then records this trail as its identity
    stub.add_response("put_object", {"ETag": '"1"'}, _put_params(ANY))
    stub.add_response("put_object", {"ETag": '"2"'}, _put_params(ANY))
    log.append("flag.set", {"flag": "cost_gates_enabled", "new_value": False})
    log.append("flag.set", {"flag": "cost_gates_enabled", "new_value": True})
    stub.assert_no_pending_responses()
    trail = log.trail_id()
    assert [p["Key"] for p in sent] == [f"prod/costeff/identity/{kid}.json", f"prod/costeff/{trail}/000000000000.json",
                                        f"prod/costeff/{trail}/000000000001.json"]
    assert f'"trail":"{trail}"'.encode() in sent[0]["Body"] and sent[0]["ObjectLockMode"] == "COMPLIANCE"
    local = log.checkpoint_path.read_bytes().splitlines(keepends=True)
    for params, line in zip(sent[1:], local, strict=True):
        assert params["Body"] == line  # the exact signed bytes of the local checkpoint
        assert params["ContentMD5"] == base64.b64encode(hashlib.md5(line).digest()).decode()
        until = params["ObjectLockRetainUntilDate"]
        assert timedelta(days=29) < until - datetime.now(timezone.utc) <= timedelta(days=30)


def test_verify_reads_the_anchor_back_and_sees_truncation(s3, tmp_path):
    client, stub = s3
    directory = tmp_path / "anchor"
    log = AuditLog(tmp_path / "audit", anchor=str(directory), home=env_home())  # written through a directory sink...
    for i in range(3):
        log.append("e", {"i": i})
    objects = sorted((directory / log.trail_id()).glob("*.json"))
    sink = S3Sink("audit-anchor", "", client=client)  # ...and read back as the same objects from S3
    keys = [f"{log.trail_id()}/{p.name}" for p in objects]

    ident_key = f"identity/{log.signer.key_id}/{trail_name(log.directory)}.json"
    identity = (directory / ident_key).read_bytes()

    def expect_listing():
        stub.add_client_error("get_object", "NoSuchKey", "no such key", http_status_code=404,
                              expected_params={"Bucket": "audit-anchor",
                                               "Key": ident_key.replace(".json", ".retired.json")})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(identity), len(identity))},
                          {"Bucket": "audit-anchor", "Key": ident_key})
        stub.add_response("list_objects_v2", {"IsTruncated": False, "Contents": [{"Key": k} for k in keys]},
                          {"Bucket": "audit-anchor", "Prefix": f"{log.trail_id()}/"})
        for key, path in zip(keys, objects, strict=True):
            data = path.read_bytes()
            stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))},
                              {"Bucket": "audit-anchor", "Key": key})

    expect_listing()
    result = verify(log.directory, anchor=sink, home=env_home())
    assert result.ok and result.anchored_checkpoints == 3 and result.anchor == "s3://audit-anchor/"
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:-1]))
    log.checkpoint_path.write_bytes(b"".join(log.checkpoint_path.read_bytes().splitlines(keepends=True)[:-1]))
    expect_listing()
    result = verify(log.directory, anchor=sink, home=env_home())
    assert not result.ok and "truncated" in result.reason and "s3://audit-anchor/" in result.reason


def test_s3_errors_are_dependency_errors_naming_the_object(s3, tmp_path):
    client, stub = s3
    sink = S3Sink("audit-anchor", "p", client=client)
    stub.add_client_error("put_object", "InvalidRequest", "Bucket is missing Object Lock Configuration",
                          expected_params=_put_params("p/t/000000000007.json"))
    with pytest.raises(DependencyError, match="s3://audit-anchor/p/t/000000000007.json.*Object Lock"):
        sink.publish("t", 7, b"{}\n")
    stub.add_client_error("put_object", "PreconditionFailed", "At least one of the pre-conditions you specified "
                          "did not hold", http_status_code=412, expected_params=_put_params("p/t/000000000007.json"))
    with pytest.raises(DependencyError, match="PreconditionFailed"):
        sink.publish("t", 7, b"{}\n")


def test_anchor_uris():
    assert isinstance(sink_from_uri("s3://b/x/y?retain_days=400"), S3Sink)
    assert sink_from_uri("s3://b/x?retain_days=400").retain_days == 400
    assert sink_from_uri("none") is None
    assert sink_from_uri("file:///tmp/a").location == "/tmp/a"
    for bad in ("s3:///x", "s3://b/x?retain_days=0", "ftp://h/x"):
        with pytest.raises(InputError):
            sink_from_uri(bad)
