"""Airflow DAGs of the mailbox migrations: one DAG ``migration_<name>`` per plan file in
``plans/`` next to this file (or in ``$MAILMIGRATE_PLANS_DIR``). An invalid plan shows up as an
import error of that plan file; the other plans' DAGs still load."""

from mailmigrate_airflow.factory import build_dags

globals().update(build_dags(__file__))
