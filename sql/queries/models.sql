-- Every checkpoint with its accuracy per split (of the dataset it was registered with).
SELECT c.model, c.origin, c.arch, left(c.checkpoint_sha256, 12) AS sha256, c.num_classes AS classes,
       c.num_features AS features, c.n_params AS params,
       max(CASE WHEN l.split = 'train' THEN l.accuracy END) AS train_acc,
       max(CASE WHEN l.split = 'val' THEN l.accuracy END) AS val_acc
FROM checkpoints c LEFT JOIN logit_sets l USING (checkpoint_sha256, dataset_id)
GROUP BY c.model, c.origin, c.arch, c.checkpoint_sha256, c.num_classes, c.num_features, c.n_params
ORDER BY c.model, sha256;
