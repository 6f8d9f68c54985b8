"""Every pinned server version, in one place. Bump here; the cache is keyed by these values.

Changing INSTALL_RECIPE forces a reinstall of everything (use it when the way we build changes).
"""

INSTALL_RECIPE = 1

# Apache Kafka: 3.9 is the conservative choice for aiokafka 0.14 (4.0 was only reported working,
# not tested upstream) and the last line that still runs the same KRaft static-quorum setup as
# production compose. Scala 2.13 is the only Scala build published for 3.9.
# Resolved from Maven Central (the Apache tarball is not reachable here) via deploy/kafka/pom.xml.
KAFKA_VERSION = "3.9.1"
KAFKA_SCALA_VERSION = "2.13"
# The Maven POMs bring no logging backend; these match what the 3.9 tarball's libs/ ships.
KAFKA_SLF4J_VERSION = "1.7.36"
KAFKA_RELOAD4J_VERSION = "1.2.25"

# MinIO ships community builds as source only. Its last release tag
# (RELEASE.2025-10-15T17-29-55Z, commit 9e49d5e7a648) is refused by the Go module proxy here with
# HTTP 403, so we pin the Feb-2026 branch head, which the proxy does serve, as a pseudo-version.
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

# FerretDB v1 is the last line that runs on plain SQLite (v2 needs PostgreSQL with the DocumentDB
# extension, not installable here); v1.24.2 is its last release. `go install module@version` builds
# a binary that panics at start (build/version/version.txt is generated, not in the module zip),
# so we build a copy of the module source with that file written (see ferretdb.py).
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"

# Prometheus comes from Debian 12's package (2.42.0+ds): not pinned to the Debian revision because
# security updates bump it; `status` shows the installed version.
PROMETHEUS_DEBIAN_PACKAGE = "prometheus"
PROMETHEUS_BINARY = "/usr/bin/prometheus"

# PostgreSQL 15 from Debian 12's package (postgresql-15): the job store. Not built by us and not
# pinned to the Debian revision (security updates bump it); `status` shows the installed version.
POSTGRES_DEBIAN_PACKAGE = "postgresql-15"
POSTGRES_BIN_DIR = "/usr/lib/postgresql/15/bin"
