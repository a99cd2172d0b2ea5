"""Load shapes for the lensgraph locustfile: a step shape and a ramp shape.

Both classes here are abstract (``abstract = True``), so locust never picks them up on its own,
even though the locustfile imports them. The locustfile defines one concrete subclass, and only
for the shape that ``LOADTEST_SHAPE`` names (``step``, ``ramp``, or ``none``, the default: no shape,
plain ``-u/-r/-t``). This matters because locust uses any concrete LoadTestShape it finds in the
locustfile.

Both shapes read locust's ``-u`` (peak users), ``-r`` (spawn rate) and ``-t`` (run time)
(``use_common_options = True``), so ``make loadtest SHAPE=step USERS=8 DURATION=70s`` means what
it says. Environment variables refine them; every value is in seconds or users:

step: the user count climbs in equal steps to the peak, then comes back down the same steps.
  LOADTEST_STEP_USERS    users added (and then removed) per step        default: max(1, peak // 4)
  LOADTEST_STEP_SECONDS  how long each level is held                    default: run time / levels, else 10
  With peak 8 and steps of 2 the levels are 2, 4, 6, 8, 6, 4, 2 (7 levels, 10 s each for -t 70s).

ramp: a straight line from 1 user to the peak, a hold at the peak, a straight line back down toward 1.
  LOADTEST_RAMP_UP       seconds to climb to the peak                   default: run time / 3, else 20
  LOADTEST_HOLD          seconds at the peak                            default: run time / 3, else 20
  LOADTEST_RAMP_DOWN     seconds to come back down                      default: run time / 3, else 20

Both: LOADTEST_MAX_USERS overrides ``-u`` as the peak (headless locust reads a missing ``-u`` as 1;
8 when there is no -u at all). Users start and stop at ``-r`` per second, or, without ``-r``, at
the peak per second, so that every level is reached within a second.
With an explicit step length or explicit ramp phases, ``-t`` still caps the run: the shape stops
at whichever comes first (its own end or ``-t``). Locust itself does not apply ``-t`` while a
shape runs, so the shape does it here.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

DEFAULT_PEAK = 8


def _env_number(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError as error:
        raise ValueError(f"{name}={value!r} is not a number") from error
    if number <= 0:
        raise ValueError(f"{name}={value!r} must be positive")
    return number


class _CommonShape(LoadTestShape):
    """Peak users, spawn rate and run time from env or locust's options."""

    abstract = True
    use_common_options = True

    def _option(self, name: str):
        runner = self.runner
        options = getattr(getattr(runner, "environment", None), "parsed_options", None)
        return getattr(options, name, None) if options is not None else None

    @property
    def peak(self) -> int:
        value = _env_number("LOADTEST_MAX_USERS") or self._option("num_users") or DEFAULT_PEAK
        return max(1, int(value))

    @property
    def run_time(self) -> float | None:
        """``-t`` in seconds (locust parses it into seconds), or None without one."""
        value = self._option("run_time")
        return float(value) if value else None

    def _spawn_rate(self, default: float) -> float:
        return float(self._option("spawn_rate") or default)


class StepLoadShape(_CommonShape):
    """Users step up to the peak every ``step_seconds``, then back down the same steps."""

    abstract = True

    def levels(self) -> list[int]:
        peak = self.peak
        step = max(1, int(_env_number("LOADTEST_STEP_USERS") or peak // 4))
        up = list(range(step, peak, step)) + [peak]
        return up + up[-2::-1]

    def step_seconds(self) -> float:
        explicit = _env_number("LOADTEST_STEP_SECONDS")
        if explicit:
            return explicit
        run_time = self.run_time
        return run_time / len(self.levels()) if run_time else 10.0

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        levels, seconds = self.levels(), self.step_seconds()
        if self.run_time and elapsed >= self.run_time:
            return None
        index = int(elapsed // seconds)
        if index >= len(levels):
            return None
        # Without -r: reach each level within a second.
        return levels[index], self._spawn_rate(default=max(levels))


class RampLoadShape(_CommonShape):
    """A linear climb from 1 user to the peak, a hold, and a linear descent back to 1."""

    abstract = True

    def phases(self) -> tuple[float, float, float]:
        third = self.run_time / 3 if self.run_time else 20.0
        return (
            _env_number("LOADTEST_RAMP_UP") or third,
            _env_number("LOADTEST_HOLD") or third,
            _env_number("LOADTEST_RAMP_DOWN") or third,
        )

    def target(self, elapsed: float) -> int | None:
        """Users ``elapsed`` seconds in: 1 -> peak along the climb, peak, peak -> 1 along the descent."""
        up, hold, down = self.phases()
        span = self.peak - 1
        if elapsed < up:
            return 1 + int(span * elapsed / up)
        if elapsed < up + hold:
            return self.peak
        if elapsed < up + hold + down:
            return self.peak - int(span * (elapsed - up - hold) / down)
        return None

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        if self.run_time and elapsed >= self.run_time:
            return None
        users = self.target(elapsed)
        if users is None:
            return None
        # Locust ticks about once a second; without -r, a rate of `peak` per second follows the line.
        return users, self._spawn_rate(default=self.peak)
