-- Per model and split: the per-sample mean logit over the classes m(x) (softmax ignores it) and its
-- share of E[f²]. A large offset share (> 0.3) means raw-gauge dependencies mostly reproduce m(x):
-- compare the share with a dependency under logit_gauge = 'centered' (dependency_share.sql).
-- One row per checkpoint, dataset and split (the latest logit set, should the logits have been recomputed).
SELECT model, split, left(checkpoint_sha256, 12) AS checkpoint, n_samples AS samples,
       round(mean_logit_mean, 2) AS mean_logit, round(mean_logit_std, 2) AS mean_logit_std,
       round(100 * offset_share, 1) AS offset_share_pct, round(top_logit_mean, 2) AS top_logit,
       round(within_sample_std, 2) AS within_sample_std
FROM logit_stats
QUALIFY row_number() OVER (PARTITION BY checkpoint_sha256, dataset_id, split
                           ORDER BY written_at DESC, logit_set_id DESC) = 1
ORDER BY model, checkpoint, split;
