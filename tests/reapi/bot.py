#!/usr/bin/env python3
"""A REAPI worker for sshcc's tests: runs BuildGrid's leases with the host's tools.

BuildGrid (the real REAPI v2 engine the tests start) schedules actions, keeps the
action cache and the CAS; since 2024 it ships no worker of its own, and its C++
workers (buildbox) are packaged nowhere this project can install from. This bot
speaks BuildGrid's real Remote Workers API (v1test2 Bots service) and runs each
action's Command with the host's compilers in a fresh directory holding the
action's input root, as buildbox-run-hosttools does:

  1. CreateBotSession, announcing OSFamily=linux, ISA=x86-64 and the
     KEY=VALUE;… pairs of $BOT_PROPERTIES;
  2. UpdateBotSession in a loop: a PENDING lease is accepted (ACTIVE); an ACTIVE
     one is run and reported COMPLETED with its ActionResult.

What it does not do (the tests do not need it): sandboxing, ByteStream for blobs
over the batch limit, output directories, concurrency (one action at a time).

  BOT_REMOTE=127.0.0.1:PORT python3 bot.py
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2 as reapi,
    remote_execution_pb2_grpc as reapi_grpc,
)
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import (
    bots_pb2 as bots,
    bots_pb2_grpc as bots_grpc,
    worker_pb2 as worker,
)
from buildgrid._protos.google.rpc import code_pb2, status_pb2

INSTANCE = os.environ.get("BOT_INSTANCE", "")
# The deadline of each Bots call; BuildGrid answers a little before it when idle.
LONG_POLL_SECONDS = 5


def log(message):
    print(f"[bot] {message}", flush=True)


class Cas:
    """Batch reads and writes against the engine's CAS."""

    def __init__(self, channel):
        self.stub = reapi_grpc.ContentAddressableStorageStub(channel)

    def read(self, digests):
        if not digests:
            return {}
        response = self.stub.BatchReadBlobs(
            reapi.BatchReadBlobsRequest(instance_name=INSTANCE, digests=digests)
        )
        blobs = {}
        for entry in response.responses:
            if entry.status.code != code_pb2.OK:
                raise RuntimeError(f"CAS lacks {entry.digest.hash}: {entry.status.message}")
            blobs[entry.digest.hash] = entry.data
        return blobs

    def read_message(self, digest, message):
        message.ParseFromString(self.read([digest])[digest.hash])
        return message

    def write(self, contents):
        """Stores each content and returns its digests, in order."""
        digests = [
            reapi.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
            for data in contents
        ]
        requests = [
            reapi.BatchUpdateBlobsRequest.Request(digest=digest, data=data)
            for digest, data in zip(digests, contents)
        ]
        if requests:
            response = self.stub.BatchUpdateBlobs(
                reapi.BatchUpdateBlobsRequest(instance_name=INSTANCE, requests=requests)
            )
            for entry in response.responses:
                if entry.status.code != code_pb2.OK:
                    raise RuntimeError(f"CAS refused {entry.digest.hash}: {entry.status.message}")
        return digests


def lay_out(cas, digest, into):
    """Writes the directory tree `digest` names under `into`."""
    directory = cas.read_message(digest, reapi.Directory())
    os.makedirs(into, exist_ok=True)
    contents = cas.read([f.digest for f in directory.files if f.digest.size_bytes])
    for file in directory.files:
        path = os.path.join(into, file.name)
        with open(path, "wb") as out:
            out.write(contents.get(file.digest.hash, b""))
        os.chmod(path, 0o755 if file.is_executable else 0o644)
        if file.node_properties.HasField("mtime"):
            mtime = file.node_properties.mtime
            ns = mtime.seconds * 1_000_000_000 + mtime.nanos
            os.utime(path, ns=(ns, ns))
    for link in directory.symlinks:
        os.symlink(link.target, os.path.join(into, link.name))
    for child in directory.directories:
        lay_out(cas, child.digest, os.path.join(into, child.name))


def run_action(cas, payload):
    """Runs the action a lease carries; returns (ActionResult, rpc Status)."""
    if payload.Is(reapi.Action.DESCRIPTOR):
        action = reapi.Action()
        payload.Unpack(action)
    else:
        digest = reapi.Digest()
        payload.Unpack(digest)
        action = cas.read_message(digest, reapi.Action())
    command = cas.read_message(action.command_digest, reapi.Command())
    root = tempfile.mkdtemp(prefix="sshcc-reapi-bot-")
    try:
        lay_out(cas, action.input_root_digest, root)
        cwd = os.path.join(root, command.working_directory)
        outputs = list(command.output_paths) or list(command.output_files)
        for output in outputs:
            os.makedirs(os.path.dirname(os.path.join(cwd, output)), exist_ok=True)
        env = {variable.name: variable.value for variable in command.environment_variables}
        timeout = action.timeout.seconds or None
        try:
            ran = subprocess.run(
                list(command.arguments), cwd=cwd, env=env, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as expired:
            status = status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message=str(expired))
            return reapi.ActionResult(exit_code=-1), status
        except OSError as err:
            status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(err))
            return reapi.ActionResult(exit_code=-1), status
        log(f"ran {command.arguments[0]} exit={ran.returncode}")
        present = [o for o in outputs if os.path.isfile(os.path.join(cwd, o))]
        contents = []
        for output in present:
            with open(os.path.join(cwd, output), "rb") as file:
                contents.append(file.read())
        stdout, stderr = cas.write([ran.stdout, ran.stderr])
        result = reapi.ActionResult(
            exit_code=ran.returncode,
            stdout_digest=stdout,
            stderr_digest=stderr,
            stdout_raw=ran.stdout,
            stderr_raw=ran.stderr,
        )
        for output, digest in zip(present, cas.write(contents)):
            result.output_files.add(
                path=output,
                digest=digest,
                is_executable=os.access(os.path.join(cwd, output), os.X_OK),
            )
        return result, status_pb2.Status(code=code_pb2.OK)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    remote = os.environ.get("BOT_REMOTE", "127.0.0.1:50051")
    channel = grpc.insecure_channel(remote)
    stub = bots_grpc.BotsStub(channel)
    cas = Cas(channel)
    properties = [("OSFamily", "linux"), ("ISA", "x86-64")]
    # More, as KEY=VALUE;KEY=VALUE (the toolchain sshcc's actions name, for instance).
    for pair in filter(None, os.environ.get("BOT_PROPERTIES", "").split(";")):
        key, _, value = pair.partition("=")
        properties.append((key, value))
    device = worker.Device(
        handle=f"sshcc-test-bot-{os.getpid()}",
        properties=[worker.Device.Property(key=k, value=v) for k, v in properties],
    )
    session = stub.CreateBotSession(
        bots.CreateBotSessionRequest(
            parent=INSTANCE,
            bot_session=bots.BotSession(
                bot_id=f"sshcc-test-bot-{os.getpid()}",
                status=bots.BotStatus.OK,
                worker=worker.Worker(devices=[device]),
            ),
        ),
        # BuildGrid holds a bot's call until it has work or the call's deadline nears.
        timeout=LONG_POLL_SECONDS,
    )
    log(f"session {session.name} on {remote}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for lease in session.leases:
            if lease.state == bots.LeaseState.PENDING:
                lease.state = bots.LeaseState.ACTIVE
            elif lease.state == bots.LeaseState.ACTIVE:
                try:
                    result, status = run_action(cas, lease.payload)
                except Exception as err:  # noqa: BLE001: a broken action must not kill the bot
                    log(f"lease {lease.id} failed: {err}")
                    result = reapi.ActionResult(exit_code=-1)
                    status = status_pb2.Status(code=code_pb2.INTERNAL, message=str(err))
                lease.result.Pack(result)
                lease.status.CopyFrom(status)
                lease.state = bots.LeaseState.COMPLETED
        session = stub.UpdateBotSession(
            bots.UpdateBotSessionRequest(name=session.name, bot_session=session),
            timeout=LONG_POLL_SECONDS,
        )


if __name__ == "__main__":
    main()
