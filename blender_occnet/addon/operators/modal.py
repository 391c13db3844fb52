"""What the add-on's modal operators share: a window-manager timer that wakes `modal` while work runs on
another thread or process, removed when the operator ends; and the shape of the operators that run a
background job shown in the preferences."""

from __future__ import annotations

from typing import Any, TypeGuard

import bpy

from .. import router, state
from ..worker import DONE


class TimerModal:
    """Mix into a bpy.types.Operator: `_run_modal` from invoke, `_stop` from modal when it ends."""

    _timer: Any = None

    def _run_modal(self, context: bpy.types.Context, interval: float) -> set[Any]:
        wm = context.window_manager
        assert wm is not None
        self._timer = wm.event_timer_add(interval, window=context.window)
        wm.modal_handler_add(self)  # type: ignore[arg-type]
        return {"RUNNING_MODAL"}

    def _stop(self, context: bpy.types.Context, result: set[Any]) -> set[Any]:
        if self._timer is not None and context.window_manager is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        return result


class PreferencesJobModal(TimerModal):
    """Mix into an operator that runs a worker.ProcessJob shown in the preferences (the backend install, a
    weights download): execute blocks (scripts, tests), invoke runs modal with Esc to cancel, redrawing
    the preferences while it works. Subclasses name in JOB the session's attribute that holds the job the
    preferences show, give `_begin` (the started job, kept there, or None after `_fail`) and may extend
    `_finished`."""

    JOB = ""  # "install" or "download" (state.Session)

    def _begin(self, context: bpy.types.Context) -> Any:
        raise NotImplementedError

    def _current(self) -> Any:
        return session_job(self.JOB)

    def _finished(self, job: Any) -> None:
        """A hook for what a job leaves behind besides its message (called for every outcome)."""

    def execute(self, context: bpy.types.Context) -> set[Any]:
        job = self._begin(context)
        if job is None:
            return {"CANCELLED"}
        job.wait()
        return self._end(job)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[Any]:
        if self._begin(context) is None:
            return {"CANCELLED"}
        return self._run_modal(context, 0.2)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[Any]:
        job = self._current()
        if job is None:
            return self._stop(context, {"CANCELLED"})
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        if event.type == "TIMER":
            for window in context.window_manager.windows if context.window_manager else ():
                for area in window.screen.areas if window.screen else ():
                    if area.type == "PREFERENCES":
                        area.tag_redraw()
            if job.state in DONE:
                return self._stop(context, self._end(job))
        return {"PASS_THROUGH"}

    def _end(self, job: Any) -> set[Any]:
        self._finished(job)
        if job.state == "finished":
            router.status().last_error = ""
            self.report({"INFO"}, job.message)  # type: ignore[attr-defined]
            return {"FINISHED"}
        if job.state == "cancelled":
            self.report({"WARNING"}, job.message)  # type: ignore[attr-defined]
            return {"CANCELLED"}
        self._fail(job.message)
        return {"CANCELLED"}

    def _fail(self, message: str) -> None:
        router.status().last_error = message
        self.report({"ERROR"}, message)  # type: ignore[attr-defined]


def session_job(name: str) -> Any:
    """The session's job of that name (an install, a download), running or last; None when there is none."""
    session = state.session_or_none()
    return getattr(session, name) if session is not None else None


def running(job: Any) -> TypeGuard[Any]:
    """Whether a job (an install, a download) exists and has not ended."""
    return job is not None and job.state not in DONE


class CancelJob:
    """Mix into the Cancel operator of a PreferencesJobModal: JOB names the session's job it stops."""

    JOB = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return running(session_job(cls.JOB))

    def execute(self, context: bpy.types.Context) -> set[Any]:
        session_job(self.JOB).cancel()
        return {"FINISHED"}
