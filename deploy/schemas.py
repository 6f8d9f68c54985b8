"""`make schemas`: write the JSON Schema of every event and an AsyncAPI 3.0 document of every
topic to `shared/schemas/`, from the event models and the topic registry. Committed, so schema
changes show in review; a test fails when they are stale."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from deploy.stack import ROOT
from shared import events
from shared.topics import TOPICS, Topic

OUT = ROOT / "shared" / "schemas"
PAYLOADS: dict[Topic, tuple[type[BaseModel], ...]] = {
    Topic.JOB_REQUESTS: (events.RequestJob,),
    Topic.JOBS_ACCEPTED: (events.JobAccepted,),
    **{
        t: (events.TaskSubmitted, events.TaskHinted)
        for t in TOPICS
        if t.value.startswith("provider-tasks-")
    },
    Topic.TASKS_SUCCEEDED: (events.TaskSucceeded,),
    Topic.TASKS_FAILED: (events.TaskFailed,),
    Topic.CANDIDATES_STORED: (events.CandidateStored,),
    Topic.JOBS_FINISHED: (events.JobCompleted, events.JobFailed, events.JobCancelled),
    Topic.JOB_UPDATES: (events.JobUpdated,),
}


def schema_files() -> dict[str, str]:
    files = {
        file_name(cls): json.dumps(cls.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for cls in events.ALL_EVENTS
    }
    files["asyncapi.json"] = json.dumps(asyncapi(), indent=2) + "\n"
    return files


def file_name(cls: type[BaseModel]) -> str:
    return f"{cls.__name__}.v{cls.model_fields['schema_version'].default}.schema.json"


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, spec in TOPICS.items():
        names = [cls.__name__ for cls in PAYLOADS[topic]]
        for cls in PAYLOADS[topic]:
            messages[cls.__name__] = {
                "name": cls.model_fields["type"].default,
                "title": cls.__name__,
                "summary": (cls.__doc__ or "").strip().split("\n")[0],
                "contentType": "application/json",
                "payload": {"$ref": f"./{file_name(cls)}"},
            }
        channels[topic.value] = {
            "address": topic.value,
            "description": spec.description,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {"kafka": {"partitions": spec.partitions, "replicas": 1}},
            "x-dlq": spec.dlq,
            "x-public": spec.public,
        }
        for consumer in spec.consumers:
            operations[f"{consumer}-receives-{topic.value}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{topic.value}"},
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [consumer]}}},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Reelforge",
            "version": "1",
            "description": "Topics and events of the Reelforge video pipeline. Every message is "
            "keyed by job id; delivery is at-least-once; de-duplicate on the CloudEvents `id`.",
        },
        "servers": {"local": {"host": "127.0.0.1:19092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in schema_files().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(schema_files())} files to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
