{{/* The collector's pod: the Deployment's (one replica) or the StatefulSet's (one pod per shard). */}}
{{- define "cycletime-collector.podTemplate" -}}
{{- $envSecret := include "cycletime-collector.envSecretName" . -}}
metadata:
  labels:
    {{- include "cycletime-collector.podSelectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "cycletime-collector.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: collector
      image: {{ include "cycletime-collector.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config
        - /etc/cycletime/config.yaml
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: 9184
          protocol: TCP
      {{- if $envSecret }}
      envFrom:
        - secretRef:
            name: {{ $envSecret }}
      {{- end }}
      env:
        - name: TMPDIR
          value: /tmp
        {{- if .Values.sharding.enabled }}
        # shard i of N: N here, i from the pod name's ordinal (<fullname>-i), which the collector reads
        - name: CYCLETIME_TOTAL_SHARDS
          value: {{ .Values.sharding.replicas | quote }}
        - name: CYCLETIME_POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- if .Values.postgresql.existingSecret }}
        - name: CYCLETIME_STORE_URL
          valueFrom:
            secretKeyRef:
              name: {{ .Values.postgresql.existingSecret }}
              key: {{ .Values.postgresql.existingSecretKey }}
        {{- else if .Values.postgresql.url }}
        - name: CYCLETIME_STORE_URL
          valueFrom:
            secretKeyRef:
              name: {{ include "cycletime-collector.secretName" . }}
              key: CYCLETIME_STORE_URL
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      livenessProbe:
        {{- include "cycletime-collector.probe" (list . .Values.livenessProbe) | nindent 8 }}
      readinessProbe:
        {{- include "cycletime-collector.probe" (list . .Values.readinessProbe) | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/cycletime
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if not (include "cycletime-collector.usesPostgres" .) }}
        - name: data
          mountPath: {{ .Values.persistence.mountPath }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "cycletime-collector.fullname" . }}-config
    # the root filesystem is read-only; Python and SQLite temp files go here
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
    {{- if include "cycletime-collector.usesPVC" . }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ include "cycletime-collector.claimName" . }}
    {{- else if not (include "cycletime-collector.usesPostgres" .) }}
    # persistence disabled: the SQLite store is lost with the pod (the next pod re-syncs `history`)
    - name: data
      emptyDir: {}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
