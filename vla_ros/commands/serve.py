"""`vla-ros serve`: a policy on Ray Serve, spoken to in openpi's websocket protocol (docs/remote.md).

Ray and the policy are imported inside the handler so that `vla-ros --help` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vla_ros.commands.argument_types import non_negative_float, positive_float, positive_int
from vla_ros.core.stages.policy import SERVED_BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve a policy to robots over the network (Ray Serve, openpi's websocket protocol)",
        description="Serve a policy from this host (GPU when present) on Ray Serve behind a websocket endpoint that "
                    "speaks openpi's protocol: metadata on connect, msgpack-numpy observations in "
                    "(observation/image uint8 HxWx3, observation/state, prompt), {'actions': float32 [H, 7], "
                    "'server_timing': ...} out. Requests from all connections are batched. Robots use it with the "
                    "graph arguments 'policy_backend:=remote policy_url:=ws://HOST:PORT api_key_file:=FILE'; "
                    "openpi-client's WebsocketClientPolicy works too. An API key is required: from --api-key-file, "
                    "else the environment variable VLA_ROS_API_KEY, else a new one printed at start. Stop with "
                    "Ctrl-C. See docs/remote.md.")
    serve.add_argument("--policy", type=Path, required=True,
                       help="policy directory (from 'vla-ros train', e.g. models/policy/vla)")
    serve.add_argument("--backend", choices=SERVED_BACKENDS, default="builtin-torch",
                       help="how the policy runs: builtin-torch (CUDA when present), builtin-onnx, builtin-onnx-int8 "
                            "(int8 MatMul weights, faster on CPU), or episode (a "
                            "recorded episode through --tokenizer, for tests) (default builtin-torch)")
    serve.add_argument("--adapter", type=Path, default=None,
                       help="LoRA adapter directory (`vla-ros finetune`) trained on --policy, merged at load")
    serve.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory for --backend episode")
    serve.add_argument("--episode-data", type=Path, default=None, help="data set directory for --backend episode")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: every interface)")
    serve.add_argument("--port", type=positive_int, default=8000, help="port (default 8000)")
    serve.add_argument("--replicas", type=positive_int, default=1,
                       help="copies of the policy, each with its own batches (default 1)")
    serve.add_argument("--max-replicas", type=positive_int, default=None,
                       help="autoscale between --replicas and this many copies on open connections per replica "
                            "(--target-connections)")
    serve.add_argument("--target-connections", type=positive_int, default=4,
                       help="autoscaling target: robots connected per replica (default 4)")
    serve.add_argument("--max-connections", type=positive_int, default=64,
                       help="most robots connected to one replica at once (default 64)")
    serve.add_argument("--max-batch", type=positive_int, default=8,
                       help="most observations answered in one forward pass (default 8; 1 = no batching)")
    serve.add_argument("--batch-wait-ms", type=non_negative_float, default=0.0,
                       help="how long a batch waits to fill, ms (default 0: a batch is what arrived while the "
                            "previous one ran, so one robot waits for nothing)")
    serve.add_argument("--front", choices=("replica", "serve"), default="replica",
                       help="what robots connect to: 'replica' = every replica listens on --host:--port itself "
                            "(SO_REUSEPORT; no proxy hops), 'serve' = Ray Serve's HTTP proxy (adds ~4-10 ms a chunk; "
                            "needed for --max-replicas autoscaling) (default replica; docs/remote.md)")
    serve.add_argument("--address", default="",
                       help="join this Ray cluster (e.g. 10.0.0.5:6379, or 'auto' for the one started on this host "
                            "with 'ray start'); default: start a local one")
    serve.add_argument("--cpus-per-replica", type=positive_float, default=1.0,
                       help="CPUs Ray reserves per replica (default 1)")
    serve.add_argument("--gpus-per-replica", type=non_negative_float, default=None,
                       help="GPUs Ray reserves per replica (default: 1 when the cluster has GPUs, else 0)")
    serve.add_argument("--threads", type=positive_int, default=1, help="CPU threads per replica (default 1)")
    serve.add_argument("--temperature", type=non_negative_float, default=0.1,
                       help="sampling temperature when a request names none (default 0.1)")
    serve.add_argument("--api-key-file", type=Path, default=None,
                       help="file holding the API key clients must send ('Authorization: Api-Key <key>')")
    serve.add_argument("--no-auth", action="store_true",
                       help="accept connections without an API key (only on a network you trust)")
    serve.add_argument("--tls-cert", type=Path, default=None, help="TLS certificate (PEM): serve wss:// instead of ws://")
    serve.add_argument("--tls-key", type=Path, default=None, help="the certificate's private key (PEM)")
    serve.add_argument("--max-request-mb", type=positive_float, default=4.0,
                       help="largest request accepted, MiB (default 4; Ray Serve's proxy caps a message at 16)")
    serve.add_argument("--temp-dir", default="", help="Ray's session folder when starting a local cluster")
    serve.set_defaults(func=_serve)


def _fail(message: str) -> SystemExit:
    return SystemExit(f"vla-ros serve: {message}")


def _api_key(args: argparse.Namespace) -> tuple[str | None, str]:
    """(the key or None, where it came from)."""
    from vla_ros.serving.security import API_KEY_ENV, ApiKeyError, key_from_environment, new_api_key, read_api_key

    if args.no_auth:
        if args.api_key_file:
            raise _fail("--no-auth and --api-key-file contradict each other; give one")
        return None, "none (--no-auth)"
    try:
        if args.api_key_file:
            return read_api_key(args.api_key_file), f"from {args.api_key_file}"
        from_env = key_from_environment()
    except ApiKeyError as exc:
        raise _fail(str(exc))
    if from_env:
        return from_env, f"from {API_KEY_ENV}"
    return new_api_key(), "generated"


def _check_paths(args: argparse.Namespace) -> None:
    if args.backend == "episode":
        if args.tokenizer is None or args.episode_data is None:
            raise _fail("--backend episode needs --tokenizer and --episode-data")
    elif not (args.policy / "config.json").is_file():
        raise _fail(f"--policy {args.policy} holds no config.json; give a policy directory from 'vla-ros train' "
                    "such as models/policy/vla")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise _fail("TLS needs both --tls-cert and --tls-key")
    if args.adapter is not None:
        from vla_ros.policy.adapters import check_adapter_base
        from vla_ros.policy.errors import PolicyLoadError

        try:
            check_adapter_base(args.adapter, args.policy)
        except PolicyLoadError as exc:
            raise _fail(f"--adapter {exc}")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key), ("--tokenizer", args.tokenizer),
                       ("--episode-data", args.episode_data)):
        if path is not None and not path.exists():
            raise _fail(f"{flag} {path} does not exist")
    if args.max_replicas is not None and args.max_replicas < args.replicas:
        raise _fail(f"--max-replicas {args.max_replicas} is below --replicas {args.replicas}")
    if args.max_replicas is not None and args.front == "replica":
        raise _fail("--max-replicas needs --front serve: autoscaling counts the connections Serve's proxy holds")


def _serve(args: argparse.Namespace) -> int:
    _check_paths(args)
    key, key_source = _api_key(args)
    from vla_ros.serving.deployment import ScalingOptions, ServerConfig
    from vla_ros.serving.runner import Endpoint, RunningServer, port_taken, wait_for_stop
    from vla_ros.serving.security import key_digest

    config = ServerConfig(
        policy=str(args.policy.resolve()), backend=args.backend,
        adapter_path=str(args.adapter.resolve()) if args.adapter else "",
        tokenizer_path=str(args.tokenizer.resolve()) if args.tokenizer else "",
        episode_data=str(args.episode_data.resolve()) if args.episode_data else "", temperature=args.temperature,
        threads=args.threads, api_key_sha256=None if key is None else key_digest(key),
        max_request_bytes=int(args.max_request_mb * (1 << 20)), max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, front=args.front, host=args.host, port=args.port,
        tls_cert=str(args.tls_cert.resolve()) if args.tls_cert else "",
        tls_key=str(args.tls_key.resolve()) if args.tls_key else "")
    scaling = ScalingOptions(replicas=args.replicas, max_replicas=args.max_replicas or 0,
                             target_connections=args.target_connections, max_connections=args.max_connections,
                             cpus_per_replica=args.cpus_per_replica,
                             gpus_per_replica=-1.0 if args.gpus_per_replica is None else args.gpus_per_replica)
    endpoint = Endpoint(args.host, args.port, str(args.tls_cert or ""), str(args.tls_key or ""))
    taken = port_taken(args.host, args.port)  # this machine only: replicas on other hosts bind there
    if taken:
        raise _fail(taken)
    print(f"starting Ray Serve ({'joining ' + args.address if args.address else 'local cluster'}) …", flush=True)
    try:
        server = RunningServer(config, scaling, endpoint, address=args.address, temp_dir=args.temp_dir)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(f"Ray Serve did not start: {first}")
    scaled = (f"{args.replicas}–{args.max_replicas} replicas (autoscaled on connections)"
              if args.max_replicas and args.max_replicas > args.replicas else f"{args.replicas} replica(s)")
    front = "Serve's proxy" if args.front == "serve" else "the replicas' own listeners"
    print(f"serving {args.policy} ({args.backend}) at {endpoint.url()} through {front}: {scaled}, "
          f"{server.scaling.gpus_per_replica:g} GPU each, batches of ≤ {args.max_batch} waiting ≤ "
          f"{args.batch_wait_ms:g} ms", flush=True)
    if key_source == "generated":  # the only copy: clients need it ('api_key_file:=' on the robot)
        print(f"API key (generated; give it to the robots): {key}", flush=True)
    else:
        print(f"API key: {key_source}", flush=True)
    print("ready; Ctrl-C stops", flush=True)
    try:
        wait_for_stop()
    finally:
        print("stopping …", flush=True)
        server.stop()
    return 0
