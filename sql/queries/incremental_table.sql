-- Tables 2 and 4 of the paper: new categories from old logits, per model, base/new split and method
-- (theta_head: new logits = Θᵀ f_base(x); linear_head: a new head on the frozen base features;
-- all_classes: the model trained on all classes with the same recipe), mean ± std over seeds (latest
-- result per model). overall: argmax over all classes; base / new: argmax within the group (Table 4);
-- pos_neg: the new classes' samples plus as many base samples. base_model: how the base model was made
-- (base-truncated: the model with the new classes' head rows removed; base-retrained: trained on the
-- base classes). Time per epoch as the paper compares it: epoch_s = the frozen base's forward pass over
-- the epoch's images + the head's updates, time_ratio = epoch_s / the all-class model's training epoch;
-- epoch_cached_s / time_ratio_cached: the head's updates alone, over cached base logits.
WITH latest AS (
    SELECT model, arg_max(result_id, written_at) AS result_id FROM incremental_results GROUP BY model
)
SELECT model, setting, method, any_value(n_base) || ' → ' || any_value(n_new) AS classes,
       any_value(base_origin) AS base_model, count(*) AS seeds,
       round(100 * avg(overall_acc), 2) AS overall, round(100 * coalesce(stddev_samp(overall_acc), 0), 2) AS overall_std,
       round(100 * avg(base_acc), 2) AS base, round(100 * coalesce(stddev_samp(base_acc), 0), 2) AS base_std,
       round(100 * avg(new_acc), 2) AS new, round(100 * coalesce(stddev_samp(new_acc), 0), 2) AS new_std,
       round(100 * avg(pos_neg_acc), 2) AS pos_neg, round(100 * coalesce(stddev_samp(pos_neg_acc), 0), 2) AS pos_neg_std,
       round(avg(epoch_seconds), 4) AS epoch_s, round(avg(time_ratio), 5) AS time_ratio,
       round(avg(epoch_seconds_cached), 4) AS epoch_cached_s, round(avg(time_ratio_cached), 5) AS time_ratio_cached
FROM incremental_results JOIN latest USING (model, result_id)
GROUP BY model, setting, method
ORDER BY model, setting, CASE method WHEN 'all_classes' THEN 0 WHEN 'linear_head' THEN 1 ELSE 2 END;
