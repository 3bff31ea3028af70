-- The rows job_run_counts gained as runs ended (migration 0014) folded into one per job and
-- outcome, once there are more than $1 of them (fewer: nothing is written). A row another
-- transaction adds meanwhile is left for the next fold; of two folds at once, each sums the
-- rows it deleted, and a row one deleted the other skips, so none is counted twice or lost.
WITH folded AS (
    DELETE FROM job_run_counts
    WHERE (SELECT count(*) FROM job_run_counts) > $1
    RETURNING code, outcome, runs, duration_us
)
INSERT INTO job_run_counts (code, outcome, runs, duration_us)
SELECT code, outcome, sum(runs), sum(duration_us)
FROM folded
GROUP BY code, outcome
