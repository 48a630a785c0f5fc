"""The test harness shared by the level suites (tests/e2e, tests/e2e_distributed, tests/ui).

- :mod:`tests.harness.processes`: child processes (spawn in their own session, stop by PID, log files
  and their tails, what is left running) and the environment they inherit;
- :mod:`tests.harness.waiting`: free loopback ports and :func:`~tests.harness.waiting.wait_until`;
- :mod:`tests.harness.fake`: the project's fake Jogg server as a child process, and its admin client;
- :mod:`tests.harness.airflow`: what every Airflow deployment here shares (``db migrate``, api-server);
- :mod:`tests.harness.timeline`: deferral timelines read from a deployment's logs;
- :mod:`tests.harness.reports`: a suite's session bookkeeping and failure reports (for conftests).

``dags/`` holds the DAG files the deployments of both e2e suites load. The unit tests of this
package (``test_*.py`` here) run with ``make test``.
"""
