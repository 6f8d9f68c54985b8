"""Apache Kafka in KRaft combined mode (broker + controller, one node), jars from Maven Central."""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

from deploy.localinfra import versions as v
from deploy.localinfra.config import HOST, KAFKA_CONTROLLER_PORT, KAFKA_PORT, REPO_ROOT, Layout
from deploy.localinfra.health import tcp_open
from deploy.localinfra.shell import log_contains, require_tool, run_logged
from deploy.localinfra.spec import ServerSpec, has_stamp, write_stamp

NAME = "kafka"
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J = REPO_ROOT / "deploy" / "kafka" / "log4j.properties"
STARTED_LINE = "Kafka Server started"  # logged by KafkaRaftServer once the broker is serving
JVM_OPTS = [
    "-Xmx512m",
    "-Xms256m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
]


def home(layout: Layout) -> Path:
    return layout.root / f"kafka-{v.KAFKA_VERSION}"


def render_properties(
    log_dir: Path, port: int = KAFKA_PORT, controller_port: int = KAFKA_CONTROLLER_PORT
) -> str:
    """server.properties for a single-node KRaft cluster on 127.0.0.1 (static quorum); other
    ports serve a private instance (`deploy.localinfra.private`)."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # Static quorum only (no controller.quorum.bootstrap.servers): see KAFKA-18987.
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "3",
        "auto.create.topics.enable": "true",  # wanted for now; the topic registry will own this
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",  # 50 by default: slow first group join
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def _properties_path(layout: Layout) -> Path:
    return layout.run_dir / "kafka" / "server.properties"


def classpath(layout: Layout) -> str:
    return str(home(layout) / "libs") + "/*"


def _installed(layout: Layout) -> bool:
    return has_stamp(home(layout), NAME, v.KAFKA_VERSION)


def _install(layout: Layout, log: Path) -> None:
    mvn = require_tool(NAME, "mvn")
    require_tool(NAME, "java")
    target = home(layout)
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    run_logged(
        NAME,
        [
            mvn,
            "-B",
            "-ntp",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            f"-Dmaven.repo.local={layout.root / 'm2'}",
            f"-Dkafka.version={v.KAFKA_VERSION}",
            f"-Dslf4j.version={v.KAFKA_SLF4J_VERSION}",
            f"-Dreload4j.version={v.KAFKA_RELOAD4J_VERSION}",
        ],
        log,
        what="maven dependency resolution",
    )
    shutil.rmtree(target / "libs", ignore_errors=True)
    staging.rename(target / "libs")
    write_stamp(target, NAME, v.KAFKA_VERSION)


def _prepare(layout: Layout) -> None:
    """Render server.properties; format the log dir the first time only."""
    java = require_tool(NAME, "java")
    log_dir = layout.data(NAME)
    log_dir.mkdir(parents=True, exist_ok=True)
    props = _properties_path(layout)
    props.parent.mkdir(parents=True, exist_ok=True)
    props.write_text(render_properties(log_dir), encoding="utf-8")
    if (log_dir / "meta.properties").exists():
        return
    run_logged(
        NAME,
        [
            java,
            *JVM_OPTS,
            f"-Dlog4j.configuration=file:{LOG4J}",
            "-cp",
            classpath(layout),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            new_cluster_id(),
            "-c",
            str(props),
            "--ignore-formatted",
        ],
        layout.log_file(NAME),
        what="storage format",
    )


def _command(layout: Layout) -> list[str]:
    java = require_tool(NAME, "java")
    return [
        java,
        *JVM_OPTS,
        f"-Dlog4j.configuration=file:{LOG4J}",
        "-cp",
        classpath(layout),
        "kafka.Kafka",
        str(_properties_path(layout)),
    ]


def _healthy(layout: Layout) -> bool:
    return tcp_open(HOST, KAFKA_PORT) and log_contains(layout.log_file(NAME), STARTED_LINE)


SPEC = ServerSpec(
    name=NAME,
    version=v.KAFKA_VERSION,
    port=KAFKA_PORT,
    address=f"{HOST}:{KAFKA_PORT}",
    startup_timeout=60.0,
    installed=_installed,
    install=_install,
    prepare=_prepare,
    command=_command,
    healthy=_healthy,
    extra_ports=((KAFKA_CONTROLLER_PORT, "controller"),),
    stop_timeout=30.0,
)
