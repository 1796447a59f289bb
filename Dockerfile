# The mailmigrate Airflow image: Airflow's official slim image plus the pinned packages of
# requirements.txt (a full lock: Airflow 3.3.2, the Celery and PostgreSQL providers, the engine's
# dependencies) and the project itself, installed as the tests install it: the engine and the
# Airflow layer as one editable package (`mailmigrate` console script, the provider entry point
# that puts the imap/ews connection types into the UI), plugins/ as Airflow's plugins folder and
# dags/migrations.py in its DAGs folder. docker-compose.yaml builds it for every Airflow service.
#
# No plan, accounts CSV, connections file or .env enters the image (.dockerignore, and only
# dags/migrations.py is copied): plans come from the volume mounted at /opt/mailmigrate/dags/plans.
#
#   docker build -t mailmigrate-airflow .
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:slim-${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ENV MAILMIGRATE_HOME=/opt/mailmigrate \
    MAILMIGRATE_STATE_DIR=/var/lib/mailmigrate/state \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/mailmigrate/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/mailmigrate/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

USER root
RUN mkdir -p /opt/mailmigrate/dags/plans /var/lib/mailmigrate/state \
 && chown -R airflow:0 /opt/mailmigrate /var/lib/mailmigrate \
 && chmod -R g+rwX /var/lib/mailmigrate
USER airflow

# Dependencies first: this layer is rebuilt only when the lock changes.
COPY --chown=airflow:0 requirements.txt /opt/mailmigrate/requirements.txt
RUN pip install --no-cache-dir -r /opt/mailmigrate/requirements.txt \
 && pip check

COPY --chown=airflow:0 pyproject.toml README.md /opt/mailmigrate/
COPY --chown=airflow:0 include/ /opt/mailmigrate/include/
COPY --chown=airflow:0 plugins/ /opt/mailmigrate/plugins/
COPY --chown=airflow:0 dags/migrations.py /opt/mailmigrate/dags/migrations.py
COPY --chown=airflow:0 docker/init.sh docker/pools.json /opt/mailmigrate/docker/
RUN pip install --no-cache-dir --no-deps -e /opt/mailmigrate \
 && python -c "import mailmigrate, mailmigrate_airflow" \
 && mailmigrate --help > /dev/null

WORKDIR /opt/airflow
