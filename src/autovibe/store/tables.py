"""The tables, as SQLAlchemy 2 typed declarative models.

Times are timezone-aware UTC (``UtcDateTime`` stores them as UTC and hands them back aware, on SQLite
too). JSON columns hold small documents (labels, operation parameters and step data).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The default retention policy of the project's machines (a machine may name its own).
    retention_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("retention_policies.id", ondelete="RESTRICT"), default=None
    )

    # Leave deleting a project with machines to the database's RESTRICT rule (no ORM nulling).
    machines: Mapped[list[Machine]] = relationship(back_populates="project", passive_deletes="all")


class Machine(Base):
    """A VM autovibe created and tracks. ``vmid`` and ``name`` are unique among tracked machines."""

    __tablename__ = "machines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    vmid: Mapped[int] = mapped_column(Integer, unique=True)
    node: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"), index=True)
    profile: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parent_machine: Mapped[str | None] = mapped_column(String(63), default=None)  # lineage: branched from
    parent_checkpoint: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(128))
    operation_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    retention_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("retention_policies.id", ondelete="RESTRICT"), default=None
    )
    network_profile: Mapped[str | None] = mapped_column(String(32), default=None)  # last applied

    project: Mapped[Project] = relationship(back_populates="machines")


class Operation(Base):
    """One journaled unit of mutating work. ``state`` is what its steps learned (vmid, node, ...)."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    owner: Mapped[str] = mapped_column(String(128))  # host:pid of the process running it
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    steps: Mapped[list[OperationStep]] = relationship(
        back_populates="operation", order_by="OperationStep.index", cascade="all, delete-orphan"
    )


class OperationStep(Base):
    __tablename__ = "operation_steps"
    __table_args__ = (UniqueConstraint("operation_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operation_id: Mapped[str] = mapped_column(ForeignKey("operations.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    operation: Mapped[Operation] = relationship(back_populates="steps")


class RetentionPolicyRow(Base):
    """A named retention policy; ``rules`` is ``RetentionPolicy`` as JSON (restic's keep words)."""

    __tablename__ = "retention_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CheckpointMark(Base):
    """What autovibe knows about a checkpoint beyond PVE's snapshot: who took it, whether it is pinned.

    PVE's snapshot list stays the truth about which checkpoints exist; a mark without a snapshot is
    dropped when the snapshot is deleted, and snapshots taken outside autovibe simply have no mark.
    """

    __tablename__ = "checkpoint_marks"
    __table_args__ = (UniqueConstraint("machine_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    operation_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CheckpointSchedule(Base):
    """Take a checkpoint of a machine, or of every machine of a project, every ``every_s`` seconds."""

    __tablename__ = "checkpoint_schedules"
    __table_args__ = (
        CheckConstraint("(project_id IS NULL) <> (machine_id IS NULL)", name="one_target"),
        UniqueConstraint("project_id"),
        UniqueConstraint("machine_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    machine_id: Mapped[int | None] = mapped_column(
        ForeignKey("machines.id", ondelete="CASCADE"), default=None
    )
    every_s: Mapped[int] = mapped_column(Integer)
    ram: Mapped[bool] = mapped_column(Boolean, default=True)
    prune: Mapped[bool] = mapped_column(Boolean, default=True)  # apply the retention policy afterwards
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---- usage ---------------------------------------------------------------------------------------
# Usage outlives machines (a deleted machine's hours still count against its project's quota), so
# usage rows name their machine and carry a ``series`` key (the deploy's operation id) instead of a
# foreign key to it.


class UsageSeries(Base):
    """One machine's sampling state: its last sample, which the next one is integrated against."""

    __tablename__ = "usage_series"

    series: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    machine: Mapped[str] = mapped_column(String(63))
    vmid: Mapped[int] = mapped_column(Integer)
    last: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the last accounting Sample, as JSON
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    storage_at: Mapped[datetime | None] = mapped_column(default=None)


class UsageSample(Base):
    """A raw sample, kept ``usage.raw_retention_h`` (sparklines, idle detection, limits)."""

    __tablename__ = "usage_samples"
    __table_args__ = (UniqueConstraint("series", "taken_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series: Mapped[str] = mapped_column(String(64), index=True)
    taken_at: Mapped[datetime] = mapped_column(index=True)
    running: Mapped[bool] = mapped_column(Boolean)
    cpu: Mapped[float] = mapped_column(Float)
    maxcpu: Mapped[float] = mapped_column(Float)
    mem: Mapped[int] = mapped_column(BigInteger)
    maxmem: Mapped[int] = mapped_column(BigInteger)
    netin: Mapped[int] = mapped_column(BigInteger)
    netout: Mapped[int] = mapped_column(BigInteger)
    diskread: Mapped[int] = mapped_column(BigInteger)
    diskwrite: Mapped[int] = mapped_column(BigInteger)
    uptime: Mapped[int] = mapped_column(BigInteger)


class UsageHourly(Base):
    """Integrated usage of one machine in one UTC hour; what quotas and reports add up."""

    __tablename__ = "usage_hourly"
    __table_args__ = (UniqueConstraint("series", "hour"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    machine: Mapped[str] = mapped_column(String(63))
    hour: Mapped[datetime] = mapped_column(index=True)
    cpu_core_hours: Mapped[float] = mapped_column(Float, default=0.0)
    mem_gib_hours: Mapped[float] = mapped_column(Float, default=0.0)
    net_in_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    net_out_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_read_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_write_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    covered_s: Mapped[float] = mapped_column(Float, default=0.0)
    gap_s: Mapped[float] = mapped_column(Float, default=0.0)


class MachineLimits(Base):
    """Per-machine limits; ``None`` means no limit. Idle auto-stop needs both idle fields."""

    __tablename__ = "machine_limits"

    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id", ondelete="CASCADE"), primary_key=True)
    max_cpu_pct: Mapped[float | None] = mapped_column(Float, default=None)
    max_mem_pct: Mapped[float | None] = mapped_column(Float, default=None)
    max_uptime_s: Mapped[int | None] = mapped_column(BigInteger, default=None)
    idle_cpu_pct: Mapped[float | None] = mapped_column(Float, default=None)
    idle_for_s: Mapped[int | None] = mapped_column(BigInteger, default=None)


class LimitViolation(Base):
    """A limit a machine went over: open (``ended_at`` None) while it lasts."""

    __tablename__ = "limit_violations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # cpu | mem | uptime
    limit: Mapped[float] = mapped_column(Float)
    peak: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class ProjectQuota(Base):
    """A cap on one usage figure of a project over a period (``day``, ``week``, ``month``; UTC)."""

    __tablename__ = "project_quotas"
    __table_args__ = (UniqueConstraint("project_id", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(32))
    limit: Mapped[float] = mapped_column(Float)
    period: Mapped[str] = mapped_column(String(8))


class ProjectEnforcement(Base):
    """Where graduated enforcement stands for a project: ok, warn, throttle or emergency."""

    __tablename__ = "project_enforcement"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column()
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class EnforcementEvent(Base):
    """Every enforcement decision and action (warnings, throttles, stops, lifts, idle stops)."""

    __tablename__ = "enforcement_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    operation_id: Mapped[str | None] = mapped_column(String(36), default=None)


# ---- security ------------------------------------------------------------------------------------


class User(Base):
    """A hub identity. Local CLI use acts as the built-in local admin, which needs no row."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token: ``token_id`` is public, the secret is kept only as ``secret_hash`` (see security)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class RoleBinding(Base):
    """A role held by a user, globally (``project_id`` None) or in one project."""

    __tablename__ = "role_bindings"
    __table_args__ = (UniqueConstraint("user_id", "role", "project_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Approval(Base):
    """An action held by the gate until another identity approves it."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    project: Mapped[str | None] = mapped_column(String(64), default=None)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    risk: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|approved|rejected|used|expired
    decided_by: Mapped[str | None] = mapped_column(String(128), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEntry(Base):
    """One append-only audit record; ``hash`` chains it to the entry before (see security.audit)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(Text)
    project: Mapped[str | None] = mapped_column(String(64), default=None)
    decision: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    risk: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class StoredSecret(Base):
    """A credential autovibe keeps (PVE token, AI key, webhook secret), Fernet-encrypted."""

    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HubJob(Base):
    """Long work submitted to the hub (a fleet deploy, a restore...): queued, claimed by one replica with
    ``FOR UPDATE SKIP LOCKED``, run there, finished with a result or an error. ``actor`` is the user
    it runs as (re-checked when it runs); its journaled operations carry the same actor."""

    __tablename__ = "hub_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|succeeded|failed|cancelled
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(128))
    project: Mapped[str | None] = mapped_column(String(64), default=None)
    replica: Mapped[str | None] = mapped_column(String(128), default=None)  # who claimed it
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Someone asked to cancel it while it ran: the replica running it notices and cancels its task.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_by: Mapped[str | None] = mapped_column(String(128), default=None)


class HubJobEvent(Base):
    """One progress event of a job, numbered from 1: what its Server-Sent Events stream replays."""

    __tablename__ = "hub_job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("hub_jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class HubReplica(Base):
    """A running hub replica and its heartbeat; a replica silent for long is taken as dead, and the
    leader fails its jobs and resumes its journaled operations."""

    __tablename__ = "hub_replicas"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the journal's owner string
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    leader: Mapped[bool] = mapped_column(Boolean, default=False)
    url: Mapped[str | None] = mapped_column(Text, default=None)
