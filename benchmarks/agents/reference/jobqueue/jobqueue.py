"""A persistent first-in first-out job queue."""

import json
from pathlib import Path


class JobQueue:
    def __init__(self, path) -> None:
        self.path = Path(path)
        data = {"next_id": 1, "jobs": []}
        if self.path.is_file():
            data = json.loads(self.path.read_text(encoding="utf-8"))
        self._next_id: int = data["next_id"]
        self._jobs: list[dict] = data["jobs"]
        self._taken: set[int] = set()

    def _save(self) -> None:
        data = {"next_id": self._next_id, "jobs": self._jobs}
        self.path.write_text(json.dumps(data), encoding="utf-8")

    def put(self, job) -> int:
        job_id = self._next_id
        self._next_id += 1
        self._jobs.append({"id": job_id, "job": job})
        self._save()
        return job_id

    def take(self):
        for entry in self._jobs:
            if entry["id"] not in self._taken:
                self._taken.add(entry["id"])
                return entry["id"], entry["job"]
        return None

    def done(self, job_id: int) -> None:
        if job_id not in self._taken:
            raise KeyError(job_id)
        self._taken.discard(job_id)
        self._jobs = [entry for entry in self._jobs if entry["id"] != job_id]
        self._save()

    def pending(self) -> int:
        return sum(entry["id"] not in self._taken for entry in self._jobs)
