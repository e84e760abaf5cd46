// Scheduled drift repair for serverless.yml (custom.fanout.drift).
const { validated, logicalIdFor } = require('./fanout-config.cjs');

/**
 * Scheduled drift repair (custom.fanout.drift.schedule): one EventBridge scheduled rule per
 * environment invoking the `drift` function, and the permission for EventBridge to invoke it.
 * The rule's target turns the "Scheduled Event" into the function's request with an
 * InputTransformer, keeping the event's id (a redelivery maps to the same rollout) and time
 * (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_InputTransformer.html).
 * No schedule configured: no rule (the function can still be invoked by hand).
 */
module.exports.driftSchedules = async ({ resolveVariable }) => {
  const config = await validated(resolveVariable);
  const Resources = {};
  if (config.drift === undefined) return { Resources };
  const functionArn = { 'Fn::GetAtt': ['DriftLambdaFunction', 'Arn'] };
  config.environments.forEach((environment, index) => {
    const id = `DriftSchedule${logicalIdFor(environment, index)}`;
    Resources[id] = {
      Type: 'AWS::Events::Rule',
      Properties: {
        Description: `secrets-fanout - drift repair of ${environment}, ${config.drift.schedule}`,
        ScheduleExpression: config.drift.schedule,
        State: 'ENABLED',
        Targets: [
          {
            Id: 'drift',
            Arn: functionArn,
            InputTransformer: {
              InputPathsMap: { id: '$.id', time: '$.time' },
              InputTemplate: `{"environment":${JSON.stringify(environment)},"eventId":"<id>","time":"<time>"}`,
            },
            // A run missed entirely waits for the next one; an hour of retries is plenty.
            RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 10 },
            DeadLetterConfig: { Arn: { 'Fn::GetAtt': ['DeadLetterQueue', 'Arn'] } },
          },
        ],
      },
    };
    Resources[`${id}Permission`] = {
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunction',
        FunctionName: functionArn,
        Principal: 'events.amazonaws.com',
        SourceArn: { 'Fn::GetAtt': [id, 'Arn'] },
      },
    };
  });
  return { Resources };
};
