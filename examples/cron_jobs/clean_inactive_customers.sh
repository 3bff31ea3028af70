#!/bin/bash
# Deletes customers with no order in the last year (the `clean_inactive_customers` job) and
# appends what happened to a log. The job itself writes its line to
# /tmp/customer_cleanup_log.txt ("YYYY-MM-DD HH:MM:SS - Deleted N inactive customers").
#
# Installed as /opt/crm/cron_jobs/clean_inactive_customers.sh and run by
# customer_cleanup_crontab.txt every Sunday at 02:00. Absolute paths throughout: cron runs with
# an almost empty environment and $HOME as its working directory.
set -euo pipefail

CRM_BIN="${CRM_BIN:-/usr/local/bin/crm}"
# The database and settings cron should use, the same file as order_reminders_crontab.txt's
# (and the services'); secrets (a PostgreSQL password, the API token) belong there, readable by
# the cron user only, never in the crontab. crm reads it itself: when it is missing or
# unreadable the run fails with that reason (exit 2) instead of cleaning a fresh, empty
# $HOME/crm.db.
CRM_ENV_FILE="${CRM_ENV_FILE:-/etc/crm/crm.env}"
OUTPUT_LOG="${CRM_CRON_OUTPUT_LOG:-/tmp/crm_cron_output.log}"

{
  echo "$(/bin/date '+%Y-%m-%d %H:%M:%S') - clean_inactive_customers.sh starting"
  # --log-dir /tmp: the job's line goes to the original's /tmp/customer_cleanup_log.txt, whatever
  # CRM_LOG_DIR the env file gives the services.
  "$CRM_BIN" --env-file "$CRM_ENV_FILE" --log-dir /tmp jobs run clean_inactive_customers
} >> "$OUTPUT_LOG" 2>&1
