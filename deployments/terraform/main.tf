data "aws_caller_identity" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  pool_name  = "${var.name}-ecs"
}

# One key for everything the pipeline stores: the lake, secrets, logs, the image repository, alerts.
resource "aws_kms_key" "totes" {
  description         = "${var.name}: lake, secrets, logs, images and alerts"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.kms.json
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:a key policy's resource is always "*" (the key itself)
  #checkov:skip=CKV_AWS_356:a key policy's resource is always "*" (the key itself)
  #checkov:skip=CKV_AWS_109:the account root must administer its key, or the key becomes unmanageable
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "ServicesEncryptForUs"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com", "sns.amazonaws.com"]
    }
  }
}

resource "aws_kms_alias" "totes" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.totes.key_id
}

# --- the lake -------------------------------------------------------------------------------------

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice left to the user
  #checkov:skip=CKV2_AWS_62:nothing consumes bucket events; manifests are read by the pipeline itself
  #checkov:skip=CKV_AWS_18:access logging needs a separate log bucket the user may already have
  bucket = var.lake_bucket_name
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.totes.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# --- the image --------------------------------------------------------------------------------------

resource "aws_ecr_repository" "totes" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.totes.arn
  }
}

# --- secrets: the values are put out of band, never in Terraform state -------------------------------
#   aws secretsmanager put-secret-value --secret-id "$(terraform output -raw source_url_secret_arn)" --secret-string 'postgresql://…'
# ECS reads them when a task starts (execution role) and puts them into its environment.

resource "aws_secretsmanager_secret" "source_url" {
  #checkov:skip=CKV2_AWS_57:rotation belongs to the database's owner; totes reads the current value each run
  name       = "${var.name}/source-url"
  kms_key_id = aws_kms_key.totes.arn
}

resource "aws_secretsmanager_secret" "warehouse_url" {
  #checkov:skip=CKV2_AWS_57:rotation belongs to the database's owner; totes reads the current value each run
  name       = "${var.name}/warehouse-url"
  kms_key_id = aws_kms_key.totes.arn
}

resource "aws_secretsmanager_secret" "sftp_url" {
  #checkov:skip=CKV2_AWS_57:the SFTP password belongs to the partner; totes reads the current value each run
  name       = "${var.name}/sftp-url"
  kms_key_id = aws_kms_key.totes.arn
}

resource "aws_secretsmanager_secret" "prefect_api_key" {
  #checkov:skip=CKV2_AWS_57:Prefect API keys are rotated in Prefect Cloud
  name       = "${var.name}/prefect-api-key"
  kms_key_id = aws_kms_key.totes.arn
}

# --- logs and alerts --------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "etl" {
  name              = "/${var.name}/etl"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.totes.arn
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/${var.name}/worker"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.totes.arn
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = aws_kms_key.totes.arn
}

resource "aws_sns_topic_subscription" "alert_email" {
  count     = var.alert_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

# --- ECS ----------------------------------------------------------------------------------------------

resource "aws_ecs_cluster" "totes" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}
