data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Execution role: what ECS itself needs to start a task (pull the image, write logs, and read the
# secrets it puts into the container's environment: the Prefect API key of the worker and of the
# flow runs, and the flow runs' database and SFTP URLs).
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.totes.arn]
  }
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # this action has no resource-level permissions
  }
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.etl.arn}:*", "${aws_cloudwatch_log_group.worker.arn}:*"]
  }
  statement {
    sid     = "InjectTheSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_secretsmanager_secret.prefect_api_key.arn,
      aws_secretsmanager_secret.source_url.arn,
      aws_secretsmanager_secret.warehouse_url.arn,
      aws_secretsmanager_secret.sftp_url.arn,
    ]
  }
  statement {
    sid       = "DecryptWithTheProjectKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.totes.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "${var.name}-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# Task role: what the pipeline's code may do. Read and write the lake prefix only; publish alerts. It
# reads no secret: ECS puts the URLs into the container's environment with the execution role.
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ListTheLakePrefix"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.lake_prefix, "${var.lake_prefix}/*"]
    }
  }
  statement {
    sid       = "ReadAndWriteTheLakePrefix"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.lake.arn}/${var.lake_prefix}/*"]
  }
  statement {
    # File feeds keep every raw version (versioning must stay on, which totes checks) and list them.
    sid       = "SeeTheFeedFileVersions"
    actions   = ["s3:GetBucketVersioning", "s3:ListBucketVersions"]
    resources = [aws_s3_bucket.lake.arn]
  }
  statement {
    # Only staged copies and quarantine notes are ever removed; raw feed files never are.
    sid     = "RemoveStagedFeedFiles"
    actions = ["s3:DeleteObject"]
    resources = [
      "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/files/staged/*",
      "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/files/quarantine/*",
    ]
  }
  statement {
    # A content index rewritten under the PII policy leaves files whose hashes let a reader test
    # guesses of personal data: totes deletes them, every version (the bucket is versioned).
    sid       = "RemoveSupersededContentIndexes"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = ["${aws_s3_bucket.lake.arn}/${var.lake_prefix}/raw/_content_*"]
  }
  statement {
    sid       = "UseTheProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.totes.arn]
  }
  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "${var.name}-task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# Worker role: the Prefect ECS worker starts flow-run tasks with the two roles above, nothing else.
resource "aws_iam_role" "worker" {
  name               = "${var.name}-worker"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid = "RunFlowRunTasks"
    actions = [
      "ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks", "ecs:RegisterTaskDefinition",
      "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions",
      "ecs:TagResource",
    ]
    resources = ["*"] # task definitions are created per deployment; restricted by the condition
    condition {
      test     = "ArnEqualsIfExists"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.totes.arn]
    }
  }
  statement {
    sid       = "PassOnlyThePipelineRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]
  }
  statement {
    sid       = "ReadFlowRunLogs"
    actions   = ["logs:GetLogEvents"]
    resources = ["${aws_cloudwatch_log_group.etl.arn}:*"]
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "${var.name}-worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}
