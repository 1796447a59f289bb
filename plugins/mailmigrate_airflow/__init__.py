"""The Airflow layer of mailmigrate: hooks, operators, sensors, triggers and the DAG factory."""
